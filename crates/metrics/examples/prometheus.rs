//! Serves shardwise's metrics for Prometheus on 127.0.0.1:9464 and records a few values.
//!
//! `cargo run -p shardwise-metrics --example prometheus --features prometheus`, then
//! `curl http://127.0.0.1:9464/metrics`.

use std::time::Duration;

use shardwise_metrics::prometheus::{self, PrometheusConfig};
use shardwise_metrics::{MetricNames, MetricsLevel, ShardMetrics, WorkerMetrics, describe};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PrometheusConfig::builder().build()?;
    let _handle = prometheus::install(&config)?;
    let names = MetricNames::default();
    describe(&names);

    let worker = WorkerMetrics::register(&names, MetricsLevel::Detailed, "worker-1");
    worker.current_leases.set(1.0);
    let shard = ShardMetrics::register(
        &names,
        MetricsLevel::Detailed,
        "orders",
        "shardId-000000000000",
        "worker-1",
    );
    println!("serving on http://{}/metrics for 60 s", config.listen());
    for _ in 0..60 {
        shard.records_processed.increment(100);
        shard.millis_behind_latest.set(0.0);
        shard.process_records_time.record(4.2);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
