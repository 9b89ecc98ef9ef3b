//! The scenarios against a real Kinesis emulator process (kinesis-local, polling) and real lease
//! stores: DynamoDB (dynalite), PostgreSQL and Redis. `./scripts/test` starts what is missing;
//! the endpoints come from `KINESIS_ENDPOINT`, `DYNAMODB_ENDPOINT`, `DATABASE_URL`, `REDIS_URL`.
//! The emulator writes a few hundred records a second, so the workloads are small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use shardwise::lease::LeaseStore;
use shardwise_tests::{Behaviour, Emulator, Fleet, scenarios, stores};

const LEASE: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(120);

fn fleet(test: &str, store: Arc<dyn LeaseStore>) -> Fleet {
    Fleet::new(Arc::new(Emulator::new(test)), store, LEASE, PATIENCE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_every_record_once_dynamodb() {
    scenarios::one_worker_every_record_once(
        &mut fleet("once-ddb", stores::dynamodb("once").await),
        200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_every_record_once_postgres() {
    scenarios::one_worker_every_record_once(
        &mut fleet("once-pg", stores::postgres("once").await),
        200,
    )
    .await;
}

/// Enhanced fan-out over HTTP/2 with TLS against the emulator (which sends no ChildShards in
/// fan-out events: shard ends by fan-out are covered in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_every_record_once_by_fan_out_dynamodb() {
    let mut fleet = Fleet::new(
        Arc::new(Emulator::new_tls("fanout-ddb")),
        stores::dynamodb("fanout").await,
        LEASE,
        PATIENCE,
    );
    fleet.config.retrieval = shardwise::Retrieval::fan_out();
    scenarios::one_worker_every_record_once(&mut fleet, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_balances_and_rebalances_dynamodb() {
    scenarios::fleet_balances_and_rebalances(
        &mut fleet("balance-ddb", stores::dynamodb("balance").await),
        120,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_shards_move_on_redis() {
    scenarios::killed_worker_shards_move_on(
        &mut fleet("killed-redis", stores::redis("killed").await),
        120,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_over_dynamodb() {
    let handover = scenarios::graceful_shutdown_hands_over(
        &mut fleet("graceful-ddb", stores::dynamodb("graceful").await),
        60,
    )
    .await;
    println!("graceful handover with DynamoDB leases: {handover:?} (lease duration {LEASE:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_parents_first_postgres() {
    scenarios::split_and_merge_parents_first(
        &mut fleet("reshard-pg", stores::postgres("reshard").await),
        60,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_processors_lose_nothing_dynamodb() {
    for behaviour in [
        Behaviour::FailsFirst(2),
        Behaviour::PanicsOnce,
        Behaviour::NeverCheckpoints,
    ] {
        scenarios::faulty_processors_lose_nothing(
            &mut fleet("faulty-ddb", stores::dynamodb("faulty").await),
            behaviour,
            30,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_inside_an_aggregate_redis() {
    scenarios::restart_resumes_inside_an_aggregate(&mut fleet(
        "restart-redis",
        stores::redis("restart").await,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_reads_a_parent_closed_after_it_dynamodb() {
    scenarios::at_timestamp_reads_a_parent_closed_after_it(
        &mut fleet("at-timestamp-ddb", stores::dynamodb("at-timestamp").await),
        30,
    )
    .await;
}

/// A fourth worker joins while records keep coming: its leases arrive by hand-off, and no
/// record is processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_by_hand_off_dynamodb() {
    scenarios::a_joining_worker_gets_its_share_by_hand_off(
        &mut fleet("join-ddb", stores::dynamodb("join").await),
        9,
        3,
        9,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_by_hand_off_postgres() {
    scenarios::a_joining_worker_gets_its_share_by_hand_off(
        &mut fleet("join-pg", stores::postgres("join").await),
        9,
        3,
        9,
    )
    .await;
}

fn heartbeat_fleet(test: &str, store: Arc<dyn LeaseStore>) -> Fleet {
    let mut fleet = fleet(test, store);
    fleet.config.liveness = shardwise::Liveness::Heartbeat;
    fleet
}

/// Workers that heartbeat instead of renewing each lease, on each real store: a killed
/// worker's shards move on (its heartbeat stands still), a joining worker gets its share by
/// hand-off (the holder learns of the request from the table version), a split and a merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_shards_move_on_heartbeat_dynamodb() {
    scenarios::killed_worker_shards_move_on(
        &mut heartbeat_fleet("hb-killed-ddb", stores::dynamodb("hb-killed").await),
        120,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_shards_move_on_heartbeat_postgres() {
    scenarios::killed_worker_shards_move_on(
        &mut heartbeat_fleet("hb-killed-pg", stores::postgres("hb-killed").await),
        120,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_by_hand_off_heartbeat_redis() {
    scenarios::a_joining_worker_gets_its_share_by_hand_off(
        &mut heartbeat_fleet("hb-join-redis", stores::redis("hb-join").await),
        9,
        3,
        9,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_parents_first_heartbeat_redis() {
    scenarios::split_and_merge_parents_first(
        &mut heartbeat_fleet("hb-reshard-redis", stores::redis("hb-reshard").await),
        60,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stream_heartbeat_redis() {
    multi_stream_on_the_emulator(
        "ms-hb-redis",
        stores::redis("hb-multi").await,
        shardwise::Liveness::Heartbeat,
    )
    .await;
}

/// Three workers restarted one at a time while records keep coming: no record processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_processes_nothing_twice_dynamodb() {
    scenarios::a_rolling_restart_processes_nothing_twice(
        &mut fleet("rolling-ddb", stores::dynamodb("rolling").await),
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_processes_nothing_twice_postgres() {
    scenarios::a_rolling_restart_processes_nothing_twice(
        &mut fleet("rolling-pg", stores::postgres("rolling").await),
        6,
    )
    .await;
}

/// A multi-stream application on the emulator: three streams, two workers, every record of
/// every stream once, leases balanced; a fourth stream named while running is picked up; a
/// stream dropped from the tracker and deleted has its leases deleted after the grace period
/// (`FormerStreams::DeleteAfter`); the first stream deleted and created again under its name
/// is a new stream, read from its own initial position under leases of its own, while the old
/// stream's leases go with the grace period; keys as the KCL's multi-stream mode writes them.
async fn multi_stream_on_the_emulator(
    tag: &str,
    store: Arc<dyn LeaseStore>,
    liveness: shardwise::Liveness,
) {
    use shardwise_tests::StreamDriver;
    use shardwise_tests::multi::{self, Changing, Seen};
    let drivers: Vec<Emulator> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|s| Emulator::new(&format!("{tag}-{s}")))
        .collect();
    for driver in &drivers[..3] {
        driver.create(2).await;
    }
    let names: Vec<&str> = drivers.iter().map(|d| d.stream()).collect();
    let tracker = Changing::of(&names[..3], shardwise::InitialPosition::TrimHorizon);
    let seen: Seen = Arc::default();
    let config = shardwise::ConsumerConfig {
        lease_duration: LEASE,
        take_interval: LEASE / 2,
        shard_sync_interval: LEASE / 2,
        stream_tracker_interval: Duration::from_secs(2),
        former_streams: shardwise::FormerStreams::DeleteAfter(Duration::from_secs(2)),
        liveness,
        ..shardwise::ConsumerConfig::default()
    };
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|w| {
            let api = drivers[0].api();
            multi::start_with(
                w,
                api,
                store.clone(),
                tracker.clone(),
                &seen,
                config.clone(),
            )
        })
        .collect();
    for driver in &drivers[..3] {
        driver.put(0..30, 6).await;
    }
    let wait_records = |expected: usize| {
        let seen = seen.clone();
        shardwise_tests::wait_for("every record of every stream", PATIENCE, move || {
            let count = multi::counts(&seen).len();
            async move { count >= expected }
        })
    };
    let wait_leases = |what: &'static str, check: fn(&[shardwise::lease::Lease]) -> bool| {
        let store = store.clone();
        shardwise_tests::wait_for(what, PATIENCE, move || {
            let store = store.clone();
            async move { check(&store.list().await.unwrap().leases) }
        })
    };
    wait_records(90).await;
    let store_for_wait = store.clone();
    shardwise_tests::wait_for("3 leases each", PATIENCE, || {
        let store = store_for_wait.clone();
        async move {
            let held = shardwise_tests::recorder::holdings(store.as_ref()).await;
            held.len() == 2 && held.values().all(|&n| n == 3)
        }
    })
    .await;

    // A fourth stream, created and named while the workers run.
    drivers[3].create(2).await;
    drivers[3].put(0..30, 6).await;
    tracker.add(names[3], shardwise::InitialPosition::TrimHorizon);
    wait_records(120).await;
    wait_leases("the fourth stream's leases", |l| l.len() == 8).await;

    // The third stream dropped and deleted: its leases go after the grace period.
    tracker.0.lock().unwrap().retain(|s| s.stream != names[2]);
    drivers[2].delete().await;
    wait_leases("the third stream's leases deleted", |l| l.len() == 6).await;

    // The first stream deleted and created again under the same name, still named.
    let epoch_of = |leases: &[shardwise::lease::Lease], name: &str| -> Vec<u64> {
        leases
            .iter()
            .filter_map(|l| l.key.stream_shard())
            .filter(|(s, _)| s.name() == name)
            .map(|(s, _)| s.creation_epoch())
            .collect()
    };
    let before = epoch_of(&store.list().await.unwrap().leases, names[0]);
    drivers[0].recreate(1).await;
    drivers[0].put(100..110, 2).await;
    wait_records(130).await;
    let first = names[0];
    let store_for_wait = store.clone();
    shardwise_tests::wait_for("the old first stream's leases deleted", PATIENCE, || {
        let store = store_for_wait.clone();
        async move {
            let leases = store.list().await.unwrap().leases;
            leases.len() == 5 && epoch_of(&leases, first).len() == 1
        }
    })
    .await;
    let after = epoch_of(&store.list().await.unwrap().leases, names[0]);
    assert!(
        before.len() == 2 && after.len() == 1 && after[0] > before[0],
        "a new stream's lease, under a later epoch: {before:?} then {after:?}"
    );

    for (stop, task) in workers {
        stop.cancel();
        task.await.unwrap();
    }
    let counts = multi::counts(&seen);
    assert_eq!(counts.len(), 130, "every record of every stream");
    assert!(counts.values().all(|&n| n == 1), "none twice: {counts:?}");
    for lease in store.list().await.unwrap().leases {
        let (stream, _) = lease.key.stream_shard().expect("a multi-stream key");
        assert!(
            names.contains(&stream.name()) && stream.name() != names[2],
            "{stream}"
        );
    }
    for driver in [&drivers[0], &drivers[1], &drivers[3]] {
        driver.delete().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stream_dynamodb() {
    multi_stream_on_the_emulator(
        "ms-ddb",
        stores::dynamodb("multi").await,
        shardwise::Liveness::PerLease,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stream_postgres() {
    multi_stream_on_the_emulator(
        "ms-pg",
        stores::postgres("multi").await,
        shardwise::Liveness::PerLease,
    )
    .await;
}
