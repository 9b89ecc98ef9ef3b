#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `describe` and the recording handles, observed through `metrics-util`'s `DebuggingRecorder`.

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind as UtilKind};
use shardwise_metrics::{
    LeaseStoreMetrics, Metric, MetricKind, MetricNames, MetricsLevel, ShardMetrics, WorkerMetrics,
    describe, operation,
};

type Labels = Vec<(String, String)>;

/// name -> (labels, value) for everything registered.
fn snapshot(s: &Snapshotter) -> BTreeMap<String, Vec<(Labels, DebugValue)>> {
    let mut out: BTreeMap<String, Vec<(Labels, DebugValue)>> = BTreeMap::new();
    for (key, _, _, value) in s.snapshot().into_vec() {
        let (_, key): (UtilKind, _) = CompositeKey::into_parts(key);
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        out.entry(key.name().to_owned())
            .or_default()
            .push((labels, value));
    }
    out
}

fn register_everything(names: &MetricNames, level: MetricsLevel) {
    let shard = ShardMetrics::register(names, level, "orders", "shardId-000000000001", "w-1");
    let worker = WorkerMetrics::register(names, level, "w-1");
    let store = LeaseStoreMetrics::register(names, level, "w-1", operation::RENEW_LEASE);
    // Touch every handle once so that each series exists.
    for c in [
        &shard.records_processed,
        &shard.data_bytes_processed,
        &shard.processor_failures,
        &shard.get_records_success,
        &shard.get_records_failures,
        &shard.get_records_throttled,
        &shard.subscribe_success,
        &shard.subscribe_failures,
        &shard.subscribe_throttled,
        &shard.expired_iterators,
        &shard.checkpoint_writes,
        &shard.checkpoint_failures,
        &shard.kpl_records_deaggregated,
        &shard.kpl_records_dropped,
        &worker.taken_leases,
        &worker.stolen_leases,
        &worker.lost_leases,
        &store.failures,
    ] {
        c.increment(1);
    }
    for g in [
        &shard.millis_behind_latest,
        &worker.current_leases,
        &worker.total_leases,
        &worker.expired_leases,
        &worker.num_workers,
        &worker.prefetched_bytes,
    ] {
        g.set(1.0);
    }
    for h in [
        &shard.process_records_time,
        &shard.initialize_time,
        &shard.shutdown_time,
        &shard.get_records_time,
        &shard.subscribe_time,
        &store.time,
    ] {
        h.record(1.0);
    }
}

#[test]
fn describe_registers_every_metric_with_its_unit_and_description() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let names = MetricNames::new("sw").unwrap();
    metrics::with_local_recorder(&recorder, || {
        describe(&names);
        register_everything(&names, MetricsLevel::Detailed);
    });
    let entries = snapshotter.snapshot().into_vec();
    assert_eq!(entries.len(), Metric::ALL.len(), "one series per metric");
    for metric in Metric::ALL {
        let (key, unit, description, _) = entries
            .iter()
            .find(|(k, ..)| k.key().name() == names.name(metric))
            .unwrap_or_else(|| panic!("{metric:?} was not recorded"));
        let kind = match metric.kind() {
            MetricKind::Counter => UtilKind::Counter,
            MetricKind::Gauge => UtilKind::Gauge,
            MetricKind::Histogram => UtilKind::Histogram,
        };
        assert_eq!(key.kind(), kind, "{metric:?}");
        assert_eq!(*unit, Some(metric.unit()), "{metric:?}");
        assert_eq!(
            description.as_deref(),
            Some(metric.description()),
            "{metric:?}"
        );
        assert!(names.name(metric).starts_with("sw_"));
    }
}

#[test]
fn labels_at_each_level() {
    let shard_labels = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // (level, labels of a per-shard metric, of a per-worker metric, of a lease-store metric)
    let cases: Vec<(MetricsLevel, Option<[Labels; 3]>)> = vec![
        (MetricsLevel::None, None),
        (
            MetricsLevel::Summary,
            Some([
                shard_labels(&[("stream", "orders"), ("worker", "w-1")]),
                shard_labels(&[("worker", "w-1")]),
                shard_labels(&[("worker", "w-1"), ("operation", "RenewLease")]),
            ]),
        ),
        (
            MetricsLevel::Detailed,
            Some([
                shard_labels(&[
                    ("stream", "orders"),
                    ("shard", "shardId-000000000001"),
                    ("worker", "w-1"),
                ]),
                shard_labels(&[("worker", "w-1")]),
                shard_labels(&[("worker", "w-1"), ("operation", "RenewLease")]),
            ]),
        ),
    ];
    let names = MetricNames::default();
    for (level, want) in cases {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || register_everything(&names, level));
        let got = snapshot(&snapshotter);
        let Some([shard, worker, op]) = want else {
            assert!(got.is_empty(), "{level}: nothing is recorded, got {got:?}");
            continue;
        };
        assert_eq!(got.len(), Metric::ALL.len(), "{level}");
        for metric in Metric::ALL {
            let series = &got[names.name(metric)];
            assert_eq!(series.len(), 1, "{level} {metric:?}");
            let want = match metric.label_keys() {
                ["stream", "shard", "worker"] => &shard,
                ["worker"] => &worker,
                ["worker", "operation"] => &op,
                other => panic!("unexpected label keys {other:?}"),
            };
            assert_eq!(&series[0].0, want, "{level} {metric:?}");
        }
    }
}

#[test]
fn summary_adds_shards_of_a_stream_together() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let names = MetricNames::default();
    metrics::with_local_recorder(&recorder, || {
        for shard in ["shardId-000000000001", "shardId-000000000002"] {
            let m = ShardMetrics::register(&names, MetricsLevel::Summary, "orders", shard, "w-1");
            m.records_processed.increment(10);
        }
        let m = ShardMetrics::register(
            &names,
            MetricsLevel::Detailed,
            "orders",
            "shardId-000000000003",
            "w-1",
        );
        m.records_processed.increment(5);
    });
    let got = snapshot(&snapshotter);
    let series = &got[names.name(Metric::RecordsProcessed)];
    assert_eq!(series.len(), 2, "{series:?}");
    let summary = series.iter().find(|(l, _)| l.len() == 2).unwrap();
    assert_eq!(summary.1, DebugValue::Counter(20));
    let detailed = series.iter().find(|(l, _)| l.len() == 3).unwrap();
    assert_eq!(detailed.1, DebugValue::Counter(5));
}

#[test]
fn values_recorded_through_the_handles_arrive() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let names = MetricNames::default();
    metrics::with_local_recorder(&recorder, || {
        let m = ShardMetrics::register(
            &names,
            MetricsLevel::Detailed,
            "orders",
            "shardId-000000000001",
            "w-1",
        );
        m.records_processed.increment(3);
        m.records_processed.increment(4);
        m.millis_behind_latest.set(250.0);
        m.millis_behind_latest.set(0.0);
        m.get_records_time.record(12.0);
        m.get_records_time.record(30.0);
    });
    let got = snapshot(&snapshotter);
    assert_eq!(
        got["shardwise_records_processed_total"][0].1,
        DebugValue::Counter(7)
    );
    match &got["shardwise_millis_behind_latest"][0].1 {
        DebugValue::Gauge(v) => assert_eq!(v.0, 0.0),
        other => panic!("{other:?}"),
    }
    match &got["shardwise_get_records_milliseconds"][0].1 {
        DebugValue::Histogram(v) => {
            assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), [12.0, 30.0])
        }
        other => panic!("{other:?}"),
    }
}
