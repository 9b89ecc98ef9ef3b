#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Prometheus exporter, scraped over real HTTP on loopback.
#![cfg(feature = "prometheus")]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use shardwise_metrics::prometheus::{self, PrometheusConfig};
use shardwise_metrics::{
    LeaseStoreMetrics, MetricNames, MetricsLevel, ShardMetrics, WorkerMetrics, describe, operation,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A hand-written HTTP/1.1 GET; returns status line, headers and the (de-chunked) body.
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status.to_owned(), headers.to_owned(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

type Sample = (String, BTreeMap<String, String>);

/// Parses the text exposition format: samples, and `# TYPE` / `# HELP` lines.
fn parse(
    text: &str,
) -> (
    BTreeMap<Sample, f64>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    let mut help = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap();
            help.insert(name.to_owned(), text.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap();
                let labels = labels
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    (samples, types, help)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_metrics_over_http() {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = PrometheusConfig::builder().listen(addr).build().unwrap();
    let handle = prometheus::install(&config).unwrap();

    // A second install is refused: one global recorder per process.
    let again = PrometheusConfig::builder()
        .listen(([127, 0, 0, 1], free_port()))
        .build()
        .unwrap();
    assert!(matches!(
        prometheus::install(&again),
        Err(shardwise_metrics::Error::RecorderAlreadyInstalled)
    ));

    let names = MetricNames::default();
    describe(&names);
    let shard = ShardMetrics::register(
        &names,
        MetricsLevel::Detailed,
        "orders",
        "shardId-000000000001",
        "w-1",
    );
    shard.records_processed.increment(7);
    shard.data_bytes_processed.increment(700);
    shard.millis_behind_latest.set(250.0);
    shard.get_records_time.record(12.0);
    shard.get_records_time.record(30.0);
    let summary = ShardMetrics::register(
        &names,
        MetricsLevel::Summary,
        "payments",
        "shardId-000000000009",
        "w-1",
    );
    summary.records_processed.increment(3);
    let worker = WorkerMetrics::register(&names, MetricsLevel::Detailed, "w-1");
    worker.current_leases.set(4.0);
    worker.taken_leases.increment(4);
    let store = LeaseStoreMetrics::register(
        &names,
        MetricsLevel::Detailed,
        "w-1",
        operation::RENEW_LEASE,
    );
    store.failures.increment(1);

    let (status, headers, body) = get(addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{headers}"
    );
    let (samples, types, help) = parse(&body);
    let value = |name: &str, l: &[(&str, &str)]| {
        samples
            .get(&(name.to_owned(), labels(l)))
            .copied()
            .unwrap_or_else(|| panic!("{name} {l:?} missing from\n{body}"))
    };
    let shard_labels = [
        ("stream", "orders"),
        ("shard", "shardId-000000000001"),
        ("worker", "w-1"),
    ];

    assert_eq!(
        value("shardwise_records_processed_total", &shard_labels),
        7.0
    );
    assert_eq!(
        value("shardwise_data_processed_bytes_total", &shard_labels),
        700.0
    );
    assert_eq!(
        value("shardwise_millis_behind_latest", &shard_labels),
        250.0
    );
    assert_eq!(
        value(
            "shardwise_records_processed_total",
            &[("stream", "payments"), ("worker", "w-1")]
        ),
        3.0
    );
    assert_eq!(value("shardwise_current_leases", &[("worker", "w-1")]), 4.0);
    assert_eq!(
        value("shardwise_taken_leases_total", &[("worker", "w-1")]),
        4.0
    );
    assert_eq!(
        value(
            "shardwise_lease_store_failures_total",
            &[("worker", "w-1"), ("operation", "RenewLease")]
        ),
        1.0
    );

    // Latencies are real histograms with the default millisecond buckets.
    let bucket = |le: &str| {
        let mut l = shard_labels.to_vec();
        l.push(("le", le));
        value("shardwise_get_records_milliseconds_bucket", &l)
    };
    assert_eq!(bucket("10"), 0.0);
    assert_eq!(bucket("25"), 1.0);
    assert_eq!(bucket("50"), 2.0);
    assert_eq!(bucket("+Inf"), 2.0);
    assert_eq!(
        value("shardwise_get_records_milliseconds_count", &shard_labels),
        2.0
    );
    assert_eq!(
        value("shardwise_get_records_milliseconds_sum", &shard_labels),
        42.0
    );

    assert_eq!(types["shardwise_records_processed_total"], "counter");
    assert_eq!(types["shardwise_millis_behind_latest"], "gauge");
    assert_eq!(types["shardwise_get_records_milliseconds"], "histogram");
    assert!(
        help["shardwise_records_processed_total"]
            .starts_with("Records handed to the record processor"),
        "{help:?}"
    );

    // The handle renders the same text without HTTP.
    assert!(
        handle
            .render()
            .contains("shardwise_records_processed_total")
    );
}
