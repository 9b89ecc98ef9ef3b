//! Enhanced fan-out against the in-memory Kinesis under paused time: the shared scenarios, plus
//! what only it can do — the service's five-minute cut, dropped subscriptions, refusals inside
//! the stream, throttling, and the end of a closed shard with its children (kinesis-local sends
//! no `ChildShards` in fan-out events, so shard end is covered here only). Retries are checked by
//! counting calls, not by timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fanout::{self, config};
use common::scenarios::read_records;
use common::{Memory, stream_id};
use shardwise_kinesis_source::testkit::{Fault, InMemoryKinesis};
use shardwise_kinesis_source::{
    ConsumerStatus, FanOutConfig, FanOutReader, KinesisApi, KinesisErrorKind, Record,
    RegistrationConfig, ShardReader, StartPosition, StreamConsumer, deregister_consumer,
    find_or_register_consumer, list_all_consumers,
};

fn memory() -> Memory {
    Memory(Arc::new(InMemoryKinesis::new()))
}

#[tokio::test(start_paused = true)]
async fn reads_before_and_after_subscribing() {
    fanout::reads_before_and_after_subscribing(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn resubscribes_without_loss_or_duplicates() {
    fanout::resubscribes_without_loss_or_duplicates(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn a_second_subscription_waits_for_the_first() {
    fanout::a_second_subscription_waits_for_the_first(&memory()).await;
}

/// A one-shard stream "s" with an ACTIVE consumer "app".
async fn setup() -> (Arc<InMemoryKinesis>, String, StreamConsumer) {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let shard = kinesis.put("s", "k", b"first".to_vec()).unwrap().0;
    let consumer = find_or_register_consumer(
        kinesis.as_ref(),
        &stream_id("s"),
        "app",
        &RegistrationConfig::default(),
    )
    .await
    .unwrap();
    (kinesis, shard, consumer)
}

fn reader(
    kinesis: &Arc<InMemoryKinesis>,
    consumer: &StreamConsumer,
    shard: &str,
    config: FanOutConfig,
) -> FanOutReader {
    FanOutReader::start(
        kinesis.clone(),
        consumer.consumer_arn.clone(),
        shard.to_owned(),
        StartPosition::TrimHorizon,
        config,
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    )
}

fn assert_once_in_order(records: &[Record], expected: usize) {
    let seqs: Vec<&str> = records.iter().map(|r| r.sequence_number.as_str()).collect();
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(seqs, unique, "in order, no duplicates");
    assert_eq!(seqs.len(), expected, "nothing lost");
}

#[tokio::test(start_paused = true)]
async fn the_five_minute_cut_loses_and_repeats_nothing() {
    let (kinesis, shard, consumer) = setup().await;
    // The reader would keep its subscriptions longer: only the service's cut ends them.
    let mut r = reader(
        &kinesis,
        &consumer,
        &shard,
        FanOutConfig {
            max_subscription_age: Duration::from_secs(3_600),
            ..config()
        },
    );
    let writer = {
        let kinesis = kinesis.clone();
        tokio::spawn(async move {
            for i in 0..360 {
                kinesis.put("s", "k", format!("r{i}").into_bytes()).unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    // 12 minutes of writes: two cuts.
    let mut records = Vec::new();
    while records.len() < 361 {
        let batch = tokio::time::timeout(Duration::from_secs(30), r.next_batch())
            .await
            .expect("a batch within 30 s")
            .unwrap()
            .unwrap();
        records.extend(batch.records);
    }
    writer.await.unwrap();
    assert_once_in_order(&records, 361);
    let calls = kinesis.subscribe_calls(&shard);
    assert_eq!(calls.len(), 3, "two cuts, three subscriptions");
    for call in &calls[1..] {
        let StartPosition::AfterSequenceNumber(seq) = &call.position else {
            panic!("resubscribed from {:?}", call.position);
        };
        assert!(
            records.iter().any(|r| r.sequence_number == *seq),
            "continues after a delivered record"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_reader_resubscribes_before_the_service_cut() {
    let (kinesis, shard, consumer) = setup().await;
    let mut r = reader(&kinesis, &consumer, &shard, config());
    let writer = {
        let kinesis = kinesis.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                kinesis.put("s", "k", format!("r{i}").into_bytes()).unwrap();
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
        })
    };
    let mut records = Vec::new();
    while records.len() < 101 {
        let (more, _) = read_records(&mut r, 1).await;
        records.extend(more);
    }
    writer.await.unwrap();
    assert_once_in_order(&records, 101);
    // 600 s with the default 290 s age: three subscriptions.
    assert_eq!(kinesis.subscribe_calls(&shard).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_subscription_resumes_after_the_last_record() {
    let (kinesis, shard, consumer) = setup().await;
    for i in 0..49 {
        kinesis.put("s", "k", format!("a{i}").into_bytes()).unwrap();
    }
    let mut r = reader(&kinesis, &consumer, &shard, config());
    let (mut records, _) = read_records(&mut r, 50).await;
    let last = records[49].sequence_number.clone();
    kinesis.inject(Fault::DropSubscriptions { shard_id: None });
    for i in 0..50 {
        kinesis.put("s", "k", format!("b{i}").into_bytes()).unwrap();
    }
    let (more, _) = read_records(&mut r, 50).await;
    records.extend(more);
    assert_once_in_order(&records, 100);
    let calls = kinesis.subscribe_calls(&shard);
    assert_eq!(calls.len(), 2, "one resubscription");
    assert_eq!(
        calls[1].position,
        StartPosition::AfterSequenceNumber(last),
        "continues after the last record delivered"
    );
}

#[tokio::test(start_paused = true)]
async fn resource_in_use_is_retried_about_every_five_seconds() {
    let (kinesis, shard, consumer) = setup().await;
    // Someone else holds the subscription for a minute.
    let held = kinesis
        .subscribe_to_shard(&consumer.consumer_arn, &shard, &StartPosition::Latest)
        .await
        .unwrap();
    let mut r = reader(&kinesis, &consumer, &shard, config());
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(held);
    let (records, _) = read_records(&mut r, 1).await;
    assert_eq!(records.len(), 1);
    // 60 s of refusals, a retry every 5–6 s: 11 or 12 refused calls, then the one that works
    // (plus the holder's call).
    let calls = kinesis.subscribe_calls(&shard).len() - 1;
    assert!((11..=14).contains(&calls), "{calls} calls");
}

#[tokio::test(start_paused = true)]
async fn resource_in_use_inside_the_stream_is_retried() {
    let (kinesis, shard, consumer) = setup().await;
    kinesis.inject(Fault::FailSubscribe {
        kind: KinesisErrorKind::ResourceInUse,
        times: 2,
        in_stream: true,
    });
    let mut r = reader(&kinesis, &consumer, &shard, config());
    let (records, _) = read_records(&mut r, 1).await;
    assert_eq!(records.len(), 1);
    let calls = kinesis.subscribe_calls(&shard);
    assert_eq!(calls.len(), 3);
    assert!(
        calls[1].at - calls[0].at >= Duration::from_secs(5),
        "waited out"
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_and_service_errors_back_off() {
    let (kinesis, shard, consumer) = setup().await;
    kinesis.inject(Fault::FailSubscribe {
        kind: KinesisErrorKind::Throttled,
        times: 3,
        in_stream: false,
    });
    kinesis.inject(Fault::FailSubscribe {
        kind: KinesisErrorKind::Unavailable,
        times: 2,
        in_stream: false,
    });
    let base = config();
    let mut r = reader(&kinesis, &consumer, &shard, base.clone());
    let (records, _) = read_records(&mut r, 1).await;
    assert_eq!(records.len(), 1);
    let calls = kinesis.subscribe_calls(&shard);
    assert_eq!(calls.len(), 6, "five refusals, then the subscription");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_secs(1)),
        "one subscribe per second at most: {gaps:?}"
    );
    assert!(gaps[4] > gaps[0], "the backoff grows: {gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn an_error_retrying_cannot_fix_is_returned_once() {
    let (kinesis, shard, consumer) = setup().await;
    kinesis.inject(Fault::FailSubscribe {
        kind: KinesisErrorKind::AccessDenied,
        times: 1,
        in_stream: false,
    });
    let mut r = reader(&kinesis, &consumer, &shard, config());
    let err = r.next_batch().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), KinesisErrorKind::AccessDenied);
    assert!(r.next_batch().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_shard_end_reports_the_children() {
    let (kinesis, shard, consumer) = setup().await;
    let mut r = ShardReader::from(reader(&kinesis, &consumer, &shard, config()));
    let (records, _) = read_records(&mut r, 1).await;
    assert_eq!(records.len(), 1);
    for i in 0..4 {
        kinesis
            .put("s", &format!("k{i}"), b"late".to_vec())
            .unwrap();
    }
    let children = kinesis.split_shard("s", &shard, 1u128 << 127).unwrap();
    kinesis.put("s", "k", b"in a child".to_vec()).unwrap();
    let (rest, end) = read_records(&mut r, usize::MAX).await;
    assert_eq!(rest.len(), 4, "everything up to the end");
    let end = end.expect("the shard end");
    let mut got: Vec<String> = end
        .child_shards
        .unwrap()
        .into_iter()
        .map(|c| {
            assert_eq!(c.parent_shards, vec![shard.clone()]);
            c.shard_id
        })
        .collect();
    got.sort();
    assert_eq!(got, children.to_vec());
    assert!(r.next_batch().await.is_none(), "nothing after the end");
    assert_eq!(kinesis.active_subscriptions(), 0, "the subscription ended");
}

#[tokio::test(start_paused = true)]
async fn prefetch_stays_bounded_while_the_processor_is_slow() {
    let (kinesis, shard, consumer) = setup().await;
    let mut r = reader(
        &kinesis,
        &consumer,
        &shard,
        FanOutConfig {
            prefetch_records: 50,
            prefetch_batches: 100,
            ..config()
        },
    );
    let writer = {
        let kinesis = kinesis.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                kinesis.put("s", "k", format!("r{i}").into_bytes()).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Nobody reads for a minute: at most one event (a second's records) over the bound.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (buffered, _) = r.buffered();
    assert!((50..=61).contains(&buffered), "{buffered} records buffered");
    writer.await.unwrap();
    let (records, _) = read_records(&mut r, 601).await;
    assert_once_in_order(&records, 601);
}

#[tokio::test(start_paused = true)]
async fn consumers_are_found_registered_listed_and_deregistered() {
    let kinesis = Arc::new(InMemoryKinesis::with_limits(Duration::from_secs(300), 2));
    kinesis.create_stream("s", 1);
    kinesis.set_consumer_transition(Duration::from_secs(5));
    let stream = stream_id("s");
    // Four workers at once: one registration, the same consumer for all.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let kinesis = kinesis.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                find_or_register_consumer(
                    kinesis.as_ref(),
                    &stream,
                    "app",
                    &RegistrationConfig::default(),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut arns = Vec::new();
    for task in tasks {
        let consumer = task.await.unwrap();
        assert_eq!(consumer.status, ConsumerStatus::Active);
        arns.push(consumer.consumer_arn);
    }
    arns.dedup();
    assert_eq!(arns.len(), 1, "one consumer");

    for name in ["b", "c", "d", "e"] {
        let arn = kinesis
            .describe_stream_summary(&stream)
            .await
            .unwrap()
            .stream_arn;
        kinesis.register_stream_consumer(&arn, name).await.unwrap();
    }
    let listed = list_all_consumers(kinesis.as_ref(), &stream).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.consumer_name.as_str()).collect();
    assert_eq!(names, ["app", "b", "c", "d", "e"], "across pages of two");

    assert!(
        deregister_consumer(kinesis.as_ref(), &stream, "app")
            .await
            .unwrap()
    );
    // Registering again while the old one is DELETING waits it out.
    let again = find_or_register_consumer(
        kinesis.as_ref(),
        &stream,
        "app",
        &RegistrationConfig::default(),
    )
    .await
    .unwrap();
    assert_ne!(again.consumer_arn, arns[0], "a new consumer");
    assert!(
        !deregister_consumer(kinesis.as_ref(), &stream, "nobody")
            .await
            .unwrap()
    );

    // Never ACTIVE within the bound: a retryable error, not a hang.
    kinesis.set_consumer_transition(Duration::from_secs(600));
    let err = find_or_register_consumer(
        kinesis.as_ref(),
        &stream,
        "slow",
        &RegistrationConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), KinesisErrorKind::Unavailable, "{err}");
}

/// A subscription at LATEST that fails before its first event is replaced from when reading
/// began, not from a new LATEST: records put in between are read.
#[tokio::test(start_paused = true)]
async fn a_resubscription_at_latest_keeps_its_place() {
    let (kinesis, shard, consumer) = setup().await;
    kinesis.inject(Fault::FailSubscribe {
        kind: KinesisErrorKind::Unavailable,
        times: 1,
        in_stream: true,
    });
    let mut reader = FanOutReader::start(
        kinesis.clone(),
        consumer.consumer_arn.clone(),
        shard.clone(),
        StartPosition::Latest,
        config(),
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    );
    while kinesis.subscribe_calls(&shard).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        kinesis.put("s", "k", format!("r{i}").into_bytes()).unwrap();
    }
    let (records, _) = read_records(&mut reader, 5).await;
    let data: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    // From a second before the first subscription: a record put just before may come too
    // (at-least-once); none put after it is missing.
    assert!(
        data.ends_with(&["r0", "r1", "r2", "r3", "r4"].map(String::from)) && data.len() <= 6,
        "{data:?}"
    );
    assert!(
        kinesis.subscribe_calls(&shard).len() >= 2,
        "subscribed again"
    );
}
