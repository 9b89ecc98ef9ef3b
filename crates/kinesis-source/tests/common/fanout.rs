//! Enhanced fan-out scenarios written once, run against every [`Harness`] (the in-memory
//! Kinesis under paused time, kinesis-local over HTTP/2 with TLS).

use std::sync::Arc;
use std::time::Duration;

use shardwise_kinesis_source::{
    FanOutConfig, FanOutReader, KinesisApi, RegistrationConfig, StartPosition, StreamConsumer,
    deregister_consumer, find_or_register_consumer, list_all_shards,
};

use super::counting::Counting;
use super::scenarios::read_records;
use super::{Harness, stream_id};

/// Settings for tests: a subscription that stays silent for 10 s is replaced.
pub fn config() -> FanOutConfig {
    FanOutConfig {
        event_timeout: Duration::from_secs(10),
        ..FanOutConfig::default()
    }
}

/// A one-shard stream with an ACTIVE consumer; returns (stream, shard id, consumer).
async fn stream_with_consumer(
    harness: &dyn Harness,
    test: &str,
) -> (String, String, StreamConsumer) {
    let stream = harness.unique(test);
    harness.create_stream(&stream, 1).await;
    let api = harness.api();
    let shards = list_all_shards(api.as_ref(), &stream_id(&stream), None, None)
        .await
        .unwrap();
    let consumer = find_or_register_consumer(
        api.as_ref(),
        &stream_id(&stream),
        &format!("{test}-consumer"),
        &RegistrationConfig {
            active_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
        },
    )
    .await
    .unwrap();
    (stream, shards[0].shard_id.clone(), consumer)
}

fn start(
    api: Arc<dyn KinesisApi>,
    consumer: &StreamConsumer,
    shard: &str,
    config: FanOutConfig,
) -> FanOutReader {
    FanOutReader::start(
        api,
        consumer.consumer_arn.clone(),
        shard.to_owned(),
        StartPosition::TrimHorizon,
        config,
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    )
}

async fn put_many(harness: &dyn Harness, stream: &str, label: &str, n: usize) -> Vec<String> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let (_, seq) = harness
            .put(stream, "one-key", format!("{label}-{i}").as_bytes())
            .await;
        seqs.push(seq);
    }
    seqs
}

/// Records put before and after subscribing arrive once each, in order; registering again
/// finds the same consumer; deregistering removes it.
pub async fn reads_before_and_after_subscribing(harness: &dyn Harness) {
    let (stream, shard, consumer) = stream_with_consumer(harness, "efo-order").await;
    let api = harness.api();
    let again = find_or_register_consumer(
        api.as_ref(),
        &stream_id(&stream),
        &consumer.consumer_name,
        &RegistrationConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        again.consumer_arn, consumer.consumer_arn,
        "found, not registered twice"
    );

    let mut expected = put_many(harness, &stream, "before", 5).await;
    let mut reader = start(api.clone(), &consumer, &shard, config());
    let (records, _) = read_records(&mut reader, 5).await;
    assert_eq!(records.len(), 5);
    expected.extend(put_many(harness, &stream, "after", 5).await);
    let (more, _) = read_records(&mut reader, 5).await;
    let got: Vec<String> = records
        .iter()
        .chain(&more)
        .map(|r| r.sequence_number.clone())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(more[4].data.as_ref(), b"after-4");
    drop(reader);

    assert!(
        deregister_consumer(api.as_ref(), &stream_id(&stream), &consumer.consumer_name)
            .await
            .unwrap()
    );
}

/// Subscriptions that end every few seconds: the records keep arriving across
/// resubscriptions, none lost, none repeated.
pub async fn resubscribes_without_loss_or_duplicates(harness: &dyn Harness) {
    let (stream, shard, consumer) = stream_with_consumer(harness, "efo-resub").await;
    let counting = Counting::new(harness.api());
    let mut reader = start(
        counting.clone(),
        &consumer,
        &shard,
        FanOutConfig {
            max_subscription_age: Duration::from_secs(3),
            ..config()
        },
    );
    let mut expected = Vec::new();
    let mut got = Vec::new();
    // Puts spread over ~15 s, read as they come.
    for round in 0..6 {
        expected.extend(put_many(harness, &stream, &format!("round{round}"), 4).await);
        let (records, _) = read_records(&mut reader, 4).await;
        got.extend(records.iter().map(|r| r.sequence_number.clone()));
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    if got.len() < expected.len() {
        let (records, _) = read_records(&mut reader, expected.len() - got.len()).await;
        got.extend(records.iter().map(|r| r.sequence_number.clone()));
    }
    assert_eq!(got, expected, "every record once, in order");
    assert!(
        counting.subscribes() >= 3,
        "resubscribed ({} subscriptions)",
        counting.subscribes()
    );
}

/// A second reader on the same consumer and shard is refused (ResourceInUse, from the call or
/// inside the stream), keeps retrying about every five seconds, and takes over once the first
/// one is gone, reading everything from its start position.
pub async fn a_second_subscription_waits_for_the_first(harness: &dyn Harness) {
    let (stream, shard, consumer) = stream_with_consumer(harness, "efo-second").await;
    let expected = put_many(harness, &stream, "r", 3).await;
    let api = harness.api();
    let mut first = start(api.clone(), &consumer, &shard, config());
    let (records, _) = read_records(&mut first, 3).await;
    assert_eq!(records.len(), 3);

    let counting = Counting::new(api);
    let mut second = start(counting.clone(), &consumer, &shard, config());
    // The first keeps its subscription for a while; the second is refused meanwhile.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let refused = counting.subscribes();
    assert!(
        (1..=3).contains(&refused),
        "retried about every five seconds, not more: {refused} attempts in 8 s"
    );
    drop(first);
    let (records, _) = read_records(&mut second, 3).await;
    let got: Vec<String> = records.iter().map(|r| r.sequence_number.clone()).collect();
    assert_eq!(got, expected);
    assert!(
        counting.subscribes() > refused,
        "subscribed after the first ended"
    );
}
