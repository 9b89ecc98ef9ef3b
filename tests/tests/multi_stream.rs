//! Multi-stream applications on the in-memory Kinesis and lease store, under a paused clock:
//! several streams, two workers, every record of every stream once, leases balanced across the
//! streams, keys in the KCL's multi-stream format, and a stream that appears while running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use shardwise::InitialPosition;
use shardwise::kinesis::KinesisApi;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise_tests::multi::{self, Changing, Seen};
use shardwise_tests::wait_for;

fn put(kinesis: &InMemoryKinesis, stream: &str, records: std::ops::Range<usize>) {
    for i in records {
        kinesis
            .put(
                stream,
                &format!("key-{}", i % 7),
                format!("{stream}/{i}").into_bytes(),
            )
            .unwrap();
    }
}

async fn wait_records(seen: &Seen, expected: usize) {
    let seen = seen.clone();
    wait_for(
        "every record of every stream",
        Duration::from_secs(600),
        || {
            let count = multi::counts(&seen).len();
            async move { count >= expected }
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn three_streams_two_workers_then_a_fourth_stream() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    let streams = ["orders", "payments", "refunds"];
    for stream in streams {
        kinesis.create_stream(stream, 2);
    }
    let tracker = Changing::of(&streams, InitialPosition::TrimHorizon);
    let seen: Seen = Arc::default();
    let (lease, interval) = (Duration::from_secs(10), Duration::from_secs(30));
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|w| {
            multi::start(
                w,
                kinesis.clone(),
                store.clone(),
                tracker.clone(),
                &seen,
                lease,
                interval,
            )
        })
        .collect();
    for stream in streams {
        put(&kinesis, stream, 0..100);
    }
    wait_records(&seen, 300).await;

    // Balanced across the streams: 6 leases, 3 each, keys in the KCL's format.
    let balanced = || {
        let store = store.clone();
        async move {
            let held = shardwise_tests::recorder::holdings(store.as_ref()).await;
            held.len() == 2 && held.values().all(|&n| n == 3)
        }
    };
    wait_for("3 leases each", Duration::from_secs(120), balanced).await;
    let leases = store.list().await.unwrap().leases;
    assert_eq!(leases.len(), 6);
    for lease in &leases {
        let (stream, shard) = lease.key.stream_shard().expect("a multi-stream key");
        assert_eq!(stream.account_id(), "000000000000");
        assert!(streams.contains(&stream.name()), "{stream}");
        assert!(shard.as_str().starts_with("shardId-"));
    }

    // A fourth stream named by the tracker gets leases within one tracker interval.
    kinesis.create_stream("chargebacks", 3);
    put(&kinesis, "chargebacks", 0..100);
    let named = tokio::time::Instant::now();
    tracker.add("chargebacks", InitialPosition::TrimHorizon);
    let store_for_wait = store.clone();
    wait_for(
        "the fourth stream's leases",
        Duration::from_secs(120),
        || {
            let store = store_for_wait.clone();
            async move { store.list().await.unwrap().leases.len() == 9 }
        },
    )
    .await;
    assert!(
        named.elapsed() <= interval,
        "leased {:?} after it was named (tracker interval {interval:?})",
        named.elapsed()
    );
    wait_records(&seen, 400).await;

    for (stop, task) in workers {
        stop.cancel();
        task.await.unwrap();
    }
    let counts = multi::counts(&seen);
    for (stream, data) in counts.keys() {
        assert!(
            data.starts_with(&format!("{stream}/")),
            "{data} arrived as {stream}"
        );
    }
    assert_eq!(counts.len(), 400, "every record of every stream");
    assert!(counts.values().all(|&n| n == 1), "none twice");
}

/// 20 streams of 10 shards over 5 workers: 40 leases each, every record once.
#[tokio::test(start_paused = true)]
async fn twenty_streams_of_ten_shards_over_five_workers() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    let names: Vec<String> = (0..20).map(|i| format!("stream-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for stream in &names {
        kinesis.create_stream(stream, 10);
    }
    let tracker = Changing::of(&names, InitialPosition::TrimHorizon);
    let seen: Seen = Arc::default();
    let (lease, interval) = (Duration::from_secs(10), Duration::from_secs(60));
    let workers: Vec<_> = (1..=5)
        .map(|i| {
            let name = format!("w{i}");
            multi::start(
                &name,
                kinesis.clone(),
                store.clone(),
                tracker.clone(),
                &seen,
                lease,
                interval,
            )
        })
        .collect();
    for stream in &names {
        put(&kinesis, stream, 0..50);
    }
    wait_records(&seen, 1_000).await;
    let store_for_wait = store.clone();
    wait_for("40 leases each", Duration::from_secs(900), || {
        let store = store_for_wait.clone();
        async move {
            let held = shardwise_tests::recorder::holdings(store.as_ref()).await;
            held.len() == 5 && held.values().all(|&n| n == 40)
        }
    })
    .await;
    for (stop, task) in workers {
        stop.cancel();
        task.await.unwrap();
    }
    let counts = multi::counts(&seen);
    assert_eq!(counts.len(), 1_000);
    assert!(counts.values().all(|&n| n == 1), "none twice");
}

/// Enhanced fan-out with several streams: one registered consumer per stream, every record
/// read by `SubscribeToShard`.
#[tokio::test(start_paused = true)]
async fn several_streams_by_fan_out() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    let streams = ["orders", "payments"];
    for stream in streams {
        kinesis.create_stream(stream, 2);
    }
    let seen: Seen = Arc::default();
    let config = shardwise::ConsumerConfig {
        retrieval: shardwise::Retrieval::fan_out(),
        ..shardwise::ConsumerConfig::default()
    };
    let tracker = Changing::of(&streams, InitialPosition::TrimHorizon);
    let (stop, task) =
        multi::start_with("w1", kinesis.clone(), store.clone(), tracker, &seen, config);
    for stream in streams {
        put(&kinesis, stream, 0..50);
    }
    wait_records(&seen, 100).await;
    stop.cancel();
    task.await.unwrap();
    for stream in streams {
        let consumers = kinesis
            .list_stream_consumers(
                &format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            consumers.consumers.len(),
            1,
            "one consumer registered on {stream}"
        );
    }
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        assert!(
            !kinesis.subscribe_calls(shard).is_empty(),
            "{shard} read by fan-out"
        );
        assert!(
            kinesis.get_records_calls(shard).is_empty(),
            "{shard} not polled"
        );
    }
    assert!(multi::counts(&seen).values().all(|&n| n == 1));
}

/// A stream the tracker stops naming: its shards stop being processed (leases released at
/// once), and with `FormerStreams::DeleteAfter` its leases are deleted after the grace period;
/// the other stream's stay.
#[tokio::test(start_paused = true)]
async fn a_stream_that_leaves_is_released_then_deleted_after_the_grace() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    let streams = ["orders", "legacy"];
    for stream in streams {
        kinesis.create_stream(stream, 2);
    }
    let tracker = Changing::of(&streams, InitialPosition::TrimHorizon);
    let seen: Seen = Arc::default();
    let lease = Duration::from_secs(10);
    let config = shardwise::ConsumerConfig {
        lease_duration: lease,
        take_interval: lease / 2,
        stream_tracker_interval: Duration::from_secs(30),
        former_streams: shardwise::FormerStreams::DeleteAfter(Duration::from_secs(120)),
        ..shardwise::ConsumerConfig::default()
    };
    let (stop, task) = multi::start_with(
        "w1",
        kinesis.clone(),
        store.clone(),
        tracker.clone(),
        &seen,
        config,
    );
    for stream in streams {
        put(&kinesis, stream, 0..20);
    }
    wait_records(&seen, 40).await;

    tracker.0.lock().unwrap().retain(|s| s.stream != "legacy");
    let dropped = tokio::time::Instant::now();
    let legacy = |leases: &[shardwise::lease::Lease]| -> Vec<shardwise::lease::Lease> {
        leases
            .iter()
            .filter(|l| {
                l.key
                    .stream_shard()
                    .is_some_and(|(s, _)| s.name() == "legacy")
            })
            .cloned()
            .collect()
    };
    let store_for_wait = store.clone();
    wait_for("legacy's leases released", Duration::from_secs(120), || {
        let store = store_for_wait.clone();
        async move {
            let leases = store.list().await.unwrap().leases;
            let legacy = legacy(&leases);
            legacy.len() == 2 && legacy.iter().all(|l| l.owner.is_none())
        }
    })
    .await;
    // Nothing put to a dropped stream is processed.
    put(&kinesis, "legacy", 20..30);
    let store_for_wait = store.clone();
    wait_for("legacy's leases deleted", Duration::from_secs(600), || {
        let store = store_for_wait.clone();
        async move { legacy(&store.list().await.unwrap().leases).is_empty() }
    })
    .await;
    assert!(
        dropped.elapsed() >= Duration::from_secs(120),
        "deleted after {:?}, before the grace period",
        dropped.elapsed()
    );
    let leases = store.list().await.unwrap().leases;
    assert_eq!(leases.len(), 2, "orders keeps its leases");
    stop.cancel();
    task.await.unwrap();
    let counts = multi::counts(&seen);
    assert!(
        !counts
            .keys()
            .filter_map(|(_, d)| d.strip_prefix("legacy/")?.parse::<usize>().ok())
            .any(|n| n >= 20),
        "a dropped stream's new records are not processed"
    );
}

/// Streams found by name prefix: only the matching ones are consumed, and one created later
/// with a matching name joins within one tracker interval.
#[tokio::test(start_paused = true)]
async fn streams_found_by_prefix() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    for stream in ["app-a", "app-b", "other"] {
        kinesis.create_stream(stream, 1);
    }
    let seen: Seen = Arc::default();
    let tracker = shardwise::StreamsByPrefix::new("app-", InitialPosition::TrimHorizon);
    let config = shardwise::ConsumerConfig {
        stream_tracker_interval: Duration::from_secs(30),
        ..shardwise::ConsumerConfig::default()
    };
    let (stop, task) =
        multi::start_with("w1", kinesis.clone(), store.clone(), tracker, &seen, config);
    for stream in ["app-a", "app-b", "other"] {
        put(&kinesis, stream, 0..10);
    }
    wait_records(&seen, 20).await;
    kinesis.create_stream("app-c", 1);
    put(&kinesis, "app-c", 0..10);
    let created = tokio::time::Instant::now();
    wait_records(&seen, 30).await;
    assert!(created.elapsed() <= Duration::from_secs(30) + Duration::from_secs(5));
    stop.cancel();
    task.await.unwrap();
    let counts = multi::counts(&seen);
    assert_eq!(counts.len(), 30);
    assert!(
        !counts.keys().any(|(s, _)| s == "other"),
        "no other stream is read"
    );
    let streams: std::collections::BTreeSet<String> = store
        .list()
        .await
        .unwrap()
        .leases
        .iter()
        .filter_map(|l| l.key.stream_shard().map(|(s, _)| s.name().to_owned()))
        .collect();
    assert_eq!(
        streams.into_iter().collect::<Vec<_>>(),
        ["app-a", "app-b", "app-c"]
    );
}

/// Streams found by prefix and tag: only those carrying the tag (with its value, when one is
/// asked for) are consumed, and one tagged later joins within one tracker interval.
#[tokio::test(start_paused = true)]
async fn streams_found_by_prefix_and_tag() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    for stream in ["app-a", "app-b", "app-c", "app-d", "other"] {
        kinesis.create_stream(stream, 1);
    }
    kinesis.tag_stream("app-a", "team", Some("pay"));
    kinesis.tag_stream("app-a", "env", None);
    kinesis.tag_stream("app-b", "team", Some("search"));
    kinesis.tag_stream("app-b", "env", None);
    kinesis.tag_stream("app-c", "team", Some("pay"));
    kinesis.tag_stream("other", "team", Some("pay"));
    kinesis.tag_stream("other", "env", Some("x"));
    let seen: Seen = Arc::default();
    let tracker = shardwise::StreamsByPrefix::new("app-", InitialPosition::TrimHorizon)
        .with_tag("team", Some("pay"))
        .with_tag("env", None);
    let config = shardwise::ConsumerConfig {
        stream_tracker_interval: Duration::from_secs(30),
        ..shardwise::ConsumerConfig::default()
    };
    let (stop, task) =
        multi::start_with("w1", kinesis.clone(), store.clone(), tracker, &seen, config);
    for stream in ["app-a", "app-b", "app-c", "app-d", "other"] {
        put(&kinesis, stream, 0..10);
    }
    wait_records(&seen, 10).await;
    kinesis.tag_stream("app-d", "team", Some("pay"));
    kinesis.tag_stream("app-d", "env", Some("prod"));
    let tagged = tokio::time::Instant::now();
    wait_records(&seen, 20).await;
    assert!(tagged.elapsed() <= Duration::from_secs(30) + Duration::from_secs(5));
    stop.cancel();
    task.await.unwrap();
    let streams: std::collections::BTreeSet<String> = multi::counts(&seen)
        .keys()
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(
        streams.into_iter().collect::<Vec<_>>(),
        ["app-a", "app-d"],
        "app-b has another team, app-c lacks env, other lacks the prefix"
    );
}

/// A stream deleted and created again under the same name is another stream: its creation
/// epoch differs, so it gets leases of its own and starts from its initial position, while
/// the old stream's leases are kept apart.
#[tokio::test(start_paused = true)]
async fn a_recreated_stream_is_a_new_stream() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store = Arc::new(MemoryLeaseStore::new());
    kinesis.create_stream("orders", 1);
    let tracker = Changing::of(&["orders"], InitialPosition::TrimHorizon);
    let seen: Seen = Arc::default();
    let (lease, interval) = (Duration::from_secs(10), Duration::from_secs(30));
    let (stop, task) = multi::start(
        "w1",
        kinesis.clone(),
        store.clone(),
        tracker,
        &seen,
        lease,
        interval,
    );
    put(&kinesis, "orders", 0..10);
    wait_records(&seen, 10).await;
    kinesis.delete_stream("orders");
    tokio::time::sleep(Duration::from_secs(5)).await;
    kinesis.create_stream("orders", 1);
    for i in 0..10 {
        kinesis
            .put("orders", "k", format!("orders/again-{i}").into_bytes())
            .unwrap();
    }
    wait_records(&seen, 20).await;
    stop.cancel();
    task.await.unwrap();
    let epochs: std::collections::BTreeSet<u64> = store
        .list()
        .await
        .unwrap()
        .leases
        .iter()
        .filter_map(|l| l.key.stream_shard().map(|(s, _)| s.creation_epoch()))
        .collect();
    assert_eq!(
        epochs.len(),
        2,
        "two streams named orders, told apart: {epochs:?}"
    );
    let counts = multi::counts(&seen);
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&n| n == 1));
}
