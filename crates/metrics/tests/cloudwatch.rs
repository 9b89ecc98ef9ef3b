#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The CloudWatch exporter against a server that speaks the CloudWatch API (moto's server),
//! found through `CLOUDWATCH_ENDPOINT`, and against endpoints that fail or hang.
#![cfg(feature = "cloudwatch")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_cloudwatch::error::BoxError;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataInput;
use serde_json::{Value, json};
use shardwise_metrics::cloudwatch::{self, CloudWatchConfig, CloudWatchHandle, CloudWatchRecorder};
use shardwise_metrics::{
    Labels, LeaseStoreMetrics, Metric, MetricNames, MetricsLevel, ShardMetrics, describe, operation,
};
use support::{CborToJson, moto_addr, query};

fn endpoint() -> String {
    std::env::var("CLOUDWATCH_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "CLOUDWATCH_ENDPOINT is not set: start a server that speaks the CloudWatch API \
             (for example `moto_server -H 127.0.0.1 -p 15917` from PyPI's moto[server]) and set \
             CLOUDWATCH_ENDPOINT=http://127.0.0.1:15917"
        )
    })
}

/// Counts what each `PutMetricData` attempt carries: data items and body bytes.
#[derive(Debug, Default, Clone)]
struct PutRequests {
    items: Arc<Mutex<Vec<usize>>>,
    bytes: Arc<Mutex<Vec<usize>>>,
}

impl Intercept for PutRequests {
    fn name(&self) -> &'static str {
        "PutRequests"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<PutMetricDataInput>() {
            self.items.lock().unwrap().push(input.metric_data().len());
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        if request.uri().contains("PutMetricData") {
            let len = request.body().bytes().map_or(0, <[u8]>::len);
            self.bytes.lock().unwrap().push(len);
        }
        Ok(())
    }
}

fn client(endpoint: &str, puts: &PutRequests) -> Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        // The adapter in front of moto does not inflate gzip bodies.
        .disable_request_compression(true)
        .interceptor(puts.clone())
        .build();
    Client::from_conf(config)
}

/// A namespace of its own for each test, so runs against one server do not mix.
fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("shardwise-test/{test}/{nanos}")
}

fn start(client: Client, config: CloudWatchConfig) -> (CloudWatchRecorder, CloudWatchHandle) {
    cloudwatch::build(client, config).unwrap()
}

fn dims(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({ "Name": k, "Value": v }))
            .collect(),
    )
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One statistic of one metric over the last few minutes via GetMetricData, combined over the
/// one-minute periods the data fell into (a test may straddle a minute).
async fn statistic(
    moto: &str,
    namespace: &str,
    name: &str,
    dimensions: &[(&str, &str)],
    stat: &str,
) -> Vec<f64> {
    let now = SystemTime::now();
    let request = json!({
        "MetricDataQueries": [{
            "Id": "q",
            "MetricStat": {
                "Metric": { "Namespace": namespace, "MetricName": name, "Dimensions": dims(dimensions) },
                "Period": 60,
                "Stat": stat,
            },
        }],
        "StartTime": epoch(now - Duration::from_secs(600)),
        "EndTime": epoch(now + Duration::from_secs(300)),
    });
    let answer = query(moto, "GetMetricData", request).await;
    let values: Vec<f64> = answer["MetricDataResults"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Values"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_f64().unwrap())
        .collect();
    let combined = match stat {
        "Maximum" => values.iter().copied().reduce(f64::max),
        "Minimum" => values.iter().copied().reduce(f64::min),
        _ => values.iter().copied().reduce(|a, b| a + b),
    };
    combined.into_iter().collect()
}

/// Every metric in `namespace` (optionally filtered), with its dimensions, via ListMetrics.
async fn metric_names(
    moto: &str,
    namespace: &str,
    filter: Option<(&str, &[(&str, &str)])>,
) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = json!({ "Namespace": namespace });
        if let Some((name, dimensions)) = filter {
            request["MetricName"] = json!(name);
            request["Dimensions"] = dims(dimensions);
        }
        if let Some(token) = &next {
            request["NextToken"] = json!(token);
        }
        let answer = query(moto, "ListMetrics", request).await;
        for m in answer["Metrics"].as_array().unwrap() {
            let mut dims: Vec<_> = m["Dimensions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    (
                        d["Name"].as_str().unwrap().to_owned(),
                        d["Value"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            dims.sort();
            out.push((m["MetricName"].as_str().unwrap().to_owned(), dims));
        }
        match answer["NextToken"].as_str() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => break,
        }
    }
    out.sort();
    out
}

/// The dimensions of shard 1 of `orders` read by `worker`. Each test uses its own worker id
/// as well as its own namespace, so tests sharing one server never see each other's data.
fn shard_dims(worker: &str) -> [(&'static str, &str); 3] {
    [
        ("StreamId", "orders"),
        ("ShardId", "shardId-000000000001"),
        ("WorkerIdentifier", worker),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_values_arrive_under_kcl_names() {
    let moto = moto_addr(&endpoint());
    let adapter = CborToJson::start(&moto).await;
    let puts = PutRequests::default();
    let client = client(&adapter.endpoint, &puts);
    let ns = namespace("values");
    let config = CloudWatchConfig::builder(&ns)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let (recorder, exporter) = start(client, config);
    let names = MetricNames::default();
    metrics::with_local_recorder(&recorder, || {
        describe(&names);
        let shard = ShardMetrics::register(
            &names,
            MetricsLevel::Detailed,
            "orders",
            "shardId-000000000001",
            &ns,
        );
        shard.records_processed.increment(5);
        shard.records_processed.increment(2);
        shard.millis_behind_latest.set(300.0);
        shard.millis_behind_latest.set(100.0);
        shard.get_records_time.record(12.0);
        shard.get_records_time.record(12.0);
        shard.get_records_time.record(40.0);
        let store =
            LeaseStoreMetrics::register(&names, MetricsLevel::Detailed, &ns, operation::TAKE_LEASE);
        store.failures.increment(3);
    });
    exporter.flush().await.unwrap();

    let listed = metric_names(&moto, &ns, None).await;
    let listed_names: Vec<_> = listed.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "RecordsProcessed",
        "MillisBehindLatest",
        "KinesisDataFetcher.getRecords.Time",
        "LeaseStore.Failure",
    ] {
        assert!(listed_names.contains(&name), "{name} not in {listed:?}");
    }
    let (_, records_dims) = listed
        .iter()
        .find(|(n, _)| n == "RecordsProcessed")
        .unwrap();
    let mut want: Vec<_> = shard_dims(&ns)
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    let mut got = records_dims.clone();
    got.sort();
    assert_eq!(got, want);

    assert_eq!(
        statistic(&moto, &ns, "RecordsProcessed", &shard_dims(&ns), "Sum").await,
        [7.0]
    );
    assert_eq!(
        statistic(
            &moto,
            &ns,
            "MillisBehindLatest",
            &shard_dims(&ns),
            "Maximum"
        )
        .await,
        [300.0]
    );
    assert_eq!(
        statistic(
            &moto,
            &ns,
            "MillisBehindLatest",
            &shard_dims(&ns),
            "Minimum"
        )
        .await,
        [100.0]
    );
    assert_eq!(
        statistic(
            &moto,
            &ns,
            "KinesisDataFetcher.getRecords.Time",
            &shard_dims(&ns),
            "SampleCount"
        )
        .await,
        [3.0]
    );
    assert_eq!(
        statistic(
            &moto,
            &ns,
            "KinesisDataFetcher.getRecords.Time",
            &shard_dims(&ns),
            "Maximum"
        )
        .await,
        [40.0]
    );
    assert_eq!(
        statistic(
            &moto,
            &ns,
            "LeaseStore.Failure",
            &[
                ("WorkerIdentifier", ns.as_str()),
                ("Operation", "TakeLease")
            ],
            "Sum"
        )
        .await,
        [3.0]
    );

    let stats = exporter.shutdown().await.unwrap();
    assert_eq!(stats.failed_requests, 0, "{stats:?}");
    assert_eq!(stats.dropped_data, 0, "{stats:?}");
    assert!(stats.sent_requests >= 1, "{stats:?}");
    assert_eq!(
        stats.sent_requests as usize,
        puts.items.lock().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_shutdown_publish_without_an_explicit_flush() {
    let moto = moto_addr(&endpoint());
    let adapter = CborToJson::start(&moto).await;
    let puts = PutRequests::default();
    let client = client(&adapter.endpoint, &puts);
    let ns = namespace("interval");
    let config = CloudWatchConfig::builder(&ns)
        .flush_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let (recorder, exporter) = start(client, config);
    let names = MetricNames::default();
    let shard = metrics::with_local_recorder(&recorder, || {
        ShardMetrics::register(
            &names,
            MetricsLevel::Detailed,
            "orders",
            "shardId-000000000001",
            &ns,
        )
    });
    shard.records_processed.increment(4);
    // The interval publishes by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while statistic(&moto, &ns, "RecordsProcessed", &shard_dims(&ns), "Sum").await != [4.0] {
        assert!(Instant::now() < deadline, "the interval never published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What is recorded just before shutdown is published by it.
    shard.checkpoint_writes.increment(9);
    exporter.shutdown().await.unwrap();
    assert_eq!(
        statistic(&moto, &ns, "Checkpoint.Success", &shard_dims(&ns), "Sum").await,
        [9.0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_the_request_limits() {
    let moto = moto_addr(&endpoint());
    let adapter = CborToJson::start(&moto).await;
    let puts = PutRequests::default();
    let client = client(&adapter.endpoint, &puts);
    let ns = namespace("batching");
    let config = CloudWatchConfig::builder(&ns)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let (recorder, exporter) = start(client, config);
    let names = MetricNames::default();
    // 2,500 series: one counter per shard.
    let shards: Vec<String> = (0..2_500).map(|i| format!("shardId-{i:012}")).collect();
    metrics::with_local_recorder(&recorder, || {
        for (i, shard) in shards.iter().enumerate() {
            let labels = Labels::for_shard(MetricsLevel::Detailed, "big", shard, &ns);
            shardwise_metrics::counter(&names, Metric::RecordsProcessed, labels.as_ref())
                .increment(i as u64 + 1);
        }
    });
    exporter.flush().await.unwrap();

    let items = puts.items.lock().unwrap().clone();
    let bytes = puts.bytes.lock().unwrap().clone();
    // One counter per shard: 2,500 data in three requests.
    assert_eq!(items, [1_000, 1_000, 500], "{bytes:?}");
    assert!(
        bytes.iter().all(|b| *b < cloudwatch::MAX_REQUEST_BYTES),
        "{bytes:?}"
    );
    assert_eq!(bytes.len(), 3, "one attempt per request: {bytes:?}");

    let last = &shards[2_499];
    let dims = [
        ("StreamId", "big"),
        ("ShardId", last.as_str()),
        ("WorkerIdentifier", ns.as_str()),
    ];
    assert_eq!(
        statistic(&moto, &ns, "RecordsProcessed", &dims, "Sum").await,
        [2_500.0]
    );
    let stats = exporter.shutdown().await.unwrap();
    assert_eq!(
        stats.sent_data,
        2_500 * 2,
        "a flush, then the shutdown's: {stats:?}"
    );
    assert_eq!(stats.failed_data + stats.dropped_data, 0, "{stats:?}");
}

/// Records `rounds` x `series` increments through the exporter's handles, sleeping `pause`
/// between rounds so that intervals pass; returns how long the recording calls took.
async fn record_rounds(
    recorder: &CloudWatchRecorder,
    series: usize,
    rounds: usize,
    pause: Duration,
) -> Duration {
    let names = MetricNames::default();
    let handles: Vec<_> = metrics::with_local_recorder(recorder, || {
        (0..series)
            .map(|i| {
                let labels = Labels::for_shard(
                    MetricsLevel::Detailed,
                    "s",
                    &format!("shardId-{i:012}"),
                    "w",
                );
                (
                    shardwise_metrics::counter(&names, Metric::RecordsProcessed, labels.as_ref()),
                    shardwise_metrics::histogram(&names, Metric::GetRecordsTime, labels.as_ref()),
                )
            })
            .collect()
    });
    let mut recording = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        for (records, latency) in &handles {
            records.increment(1);
            latency.record(5.0);
        }
        recording += started.elapsed();
        tokio::time::sleep(pause).await;
    }
    recording
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_costs_recording_nothing_and_is_counted() {
    // Baseline against the real server.
    let puts = PutRequests::default();
    let healthy = CloudWatchConfig::builder(namespace("healthy"))
        .flush_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let adapter = CborToJson::start(&moto_addr(&endpoint())).await;
    let (recorder, exporter) = start(client(&adapter.endpoint, &puts), healthy);
    let baseline = record_rounds(&recorder, 1_200, 3, Duration::from_millis(700)).await;
    let healthy_stats = exporter.shutdown().await.unwrap();

    // A closed port: every request is refused at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let puts = PutRequests::default();
    let failing = CloudWatchConfig::builder(namespace("failing"))
        .flush_interval(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2))
        .max_buffered_requests(1)
        .build()
        .unwrap();
    let (recorder, exporter) = start(client(&format!("http://{closed}"), &puts), failing);
    let against_dead = record_rounds(&recorder, 1_200, 3, Duration::from_millis(700)).await;
    let stats = exporter.shutdown().await.unwrap();
    eprintln!("recording took {baseline:?} (healthy) and {against_dead:?} (closed port)");
    eprintln!("healthy: {healthy_stats:?}\nclosed port: {stats:?}");

    // Every datum is accounted for as failed or dropped, none was sent, and the recording loop
    // ran to completion.
    assert_eq!(
        healthy_stats.failed_data + healthy_stats.dropped_data,
        0,
        "{healthy_stats:?}"
    );
    assert_eq!(stats.sent_data, 0, "{stats:?}");
    assert!(stats.failed_requests > 0, "{stats:?}");
    assert_eq!(
        stats.failed_requests as usize,
        puts.items.lock().unwrap().len()
    );
    assert_eq!(
        stats.failed_data as usize,
        puts.items.lock().unwrap().iter().sum::<usize>()
    );
    assert_eq!(
        stats.dropped_samples + stats.rejected_values + stats.rejected_series,
        0
    );
    assert_eq!(
        stats.collected_data,
        stats.failed_data + stats.dropped_data,
        "{stats:?}"
    );
    assert_eq!(
        healthy_stats.collected_data, healthy_stats.sent_data,
        "{healthy_stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_fills_the_buffer_and_drops_instead_of_blocking() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    let acceptor = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });

    let puts = PutRequests::default();
    let config = CloudWatchConfig::builder(namespace("hanging"))
        .flush_interval(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(3))
        .max_buffered_requests(1)
        .build()
        .unwrap();
    let (recorder, exporter) = start(client(&format!("http://{addr}"), &puts), config);
    // 2,500 counters and 2,500 histograms: 5 requests per interval, against room for 1 waiting
    // and 1 in flight.
    let recording = record_rounds(&recorder, 2_500, 4, Duration::from_millis(600)).await;
    let during = exporter.stats();
    eprintln!("recording took {recording:?}; while hanging: {during:?}");
    assert!(
        during.dropped_data > 0,
        "the buffer must drop, not block: {during:?}"
    );
    assert_eq!(during.sent_data, 0, "{during:?}");

    let stats = tokio::time::timeout(Duration::from_secs(60), exporter.shutdown())
        .await
        .expect("shutdown is bounded by the request timeout")
        .unwrap();
    assert!(stats.failed_requests > 0, "requests time out: {stats:?}");
    // Everything collected was either dropped or failed.
    assert_eq!(stats.sent_data, 0, "{stats:?}");
    assert_eq!(
        stats.collected_data,
        stats.dropped_data + stats.failed_data,
        "{stats:?}"
    );
    acceptor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_filter_finds_one_shard() {
    let moto = moto_addr(&endpoint());
    let adapter = CborToJson::start(&moto).await;
    let puts = PutRequests::default();
    let client = client(&adapter.endpoint, &puts);
    let ns = namespace("filter");
    let config = CloudWatchConfig::builder(&ns).build().unwrap();
    let (recorder, exporter) = start(client, config);
    let names = MetricNames::default();
    metrics::with_local_recorder(&recorder, || {
        for shard in ["shardId-000000000001", "shardId-000000000002"] {
            let labels = Labels::for_shard(MetricsLevel::Detailed, "orders", shard, &ns);
            shardwise_metrics::counter(&names, Metric::ExpiredIterator, labels.as_ref())
                .increment(1);
        }
        let summary =
            Labels::for_shard(MetricsLevel::Summary, "orders", "shardId-000000000003", &ns);
        shardwise_metrics::counter(&names, Metric::ExpiredIterator, summary.as_ref()).increment(1);
    });
    exporter.shutdown().await.unwrap();
    let found = metric_names(
        &moto,
        &ns,
        Some(("ExpiredIterator", &[("ShardId", "shardId-000000000002")])),
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    let all = metric_names(&moto, &ns, None).await;
    assert_eq!(
        all.len(),
        3,
        "two detailed series and one summary series: {all:?}"
    );
}
