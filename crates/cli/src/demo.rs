//! `shardwise demo`: no AWS account, no set-up. An in-process Kinesis and lease store (the
//! facade's `testkit`), a stream of 4 shards, records (some KPL-aggregated), three workers
//! sharing the shards, a split mid-run, a worker stopped gracefully, and a final count of
//! records produced and processed.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition, RecordBatch, processor_fn};
use shardwise_kpl_deagg::{Aggregator, AggregatorConfig};
use tokio_util::sync::CancellationToken;

use crate::error::{CliError, with_causes};

const STREAM: &str = "demo-orders";

/// Puts `count` records numbered from `first`: every fourth Kinesis record is a KPL aggregate of
/// five user records of one customer. Returns the ids of the user records put.
fn produce(
    kinesis: &InMemoryKinesis,
    first: usize,
    count: usize,
) -> Result<Vec<String>, Box<dyn Error>> {
    let mut ids = Vec::new();
    let mut i = first;
    while i < first + count {
        if i.is_multiple_of(4) && i + 5 <= first + count {
            let mut aggregator = Aggregator::new(AggregatorConfig::new());
            // The KPL packs records bound for the same shard: here, one customer's orders.
            let customer = format!("customer-{}", i % 20);
            for j in i..i + 5 {
                let _ = aggregator.add(&customer, None, format!("order-{j}"))?;
                ids.push(format!("order-{j}"));
            }
            if let Some(aggregate) = aggregator.flush() {
                kinesis.put(STREAM, &aggregate.partition_key, aggregate.data)?;
            }
            i += 5;
        } else {
            kinesis.put(
                STREAM,
                &format!("customer-{}", i % 20),
                format!("order-{i}").into_bytes(),
            )?;
            ids.push(format!("order-{i}"));
            i += 1;
        }
    }
    Ok(ids)
}

async fn holdings(store: &dyn LeaseStore) -> Result<String, Box<dyn Error>> {
    let mut by_worker: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lease in store.list().await?.leases {
        let owner = match (&lease.owner, lease.is_ended()) {
            (_, true) => "(ended)".to_owned(),
            (Some(o), false) => o.to_string(),
            (None, false) => "(free)".to_owned(),
        };
        by_worker.entry(owner).or_default().push(
            lease
                .key
                .as_str()
                .trim_start_matches("shardId-0000000000")
                .to_owned(),
        );
    }
    Ok(by_worker
        .iter()
        .map(|(w, s)| format!("{w}: [{}]", s.join(" ")))
        .collect::<Vec<_>>()
        .join("  "))
}

/// Runs the demo, printing what happens on stdout.
pub(crate) async fn run() -> Result<(), CliError> {
    demo()
        .await
        .map_err(|e| CliError::failure(format!("demo: {}", with_causes(e.as_ref()))))
}

async fn demo() -> Result<(), Box<dyn Error>> {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream(STREAM, 4);
    let store = Arc::new(MemoryLeaseStore::new());
    let processed: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut produced = produce(&kinesis, 0, 2_000)?;
    println!(
        "stream {STREAM}: 4 shards, {} user records put (every fourth Kinesis record a KPL aggregate)",
        produced.len()
    );

    let config = ConsumerConfig {
        initial_position: InitialPosition::TrimHorizon,
        lease_duration: Duration::from_secs(2),
        take_interval: Duration::from_millis(500),
        shard_sync_interval: Duration::from_secs(1),
        parent_poll_interval: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut workers = BTreeMap::new();
    for name in ["worker-a", "worker-b", "worker-c"] {
        let seen = processed.clone();
        let consumer = Consumer::builder()
            .stream(STREAM)
            .kinesis(kinesis.clone())
            .lease_store(store.clone())
            .worker_id(name)
            .config(config.clone())
            .processor(processor_fn(move |batch: RecordBatch| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().map_err(|_| "lock poisoned")?;
                    seen.extend(
                        batch
                            .records
                            .iter()
                            .map(|r| String::from_utf8_lossy(&r.data).into_owned()),
                    );
                    Ok(())
                }
            }))
            .build()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        workers.insert(name, (stop, task));
    }

    let progress = |label: &str, done: usize| {
        println!(
            "[{label}] processed {done} ({} deliveries)",
            processed.lock().map(|v| v.len()).unwrap_or(0)
        )
    };
    let count = |p: &Arc<Mutex<Vec<String>>>| {
        p.lock()
            .map(|v| v.iter().collect::<HashSet<_>>().len())
            .unwrap_or(0)
    };
    for step in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        progress(
            &format!("t+{:.1}s", 0.7 * f64::from(step + 1)),
            count(&processed),
        );
        println!("  leases  {}", holdings(store.as_ref()).await?);
    }

    let leases = store.list().await?.leases;
    if let Some((first, Some(range))) = leases
        .first()
        .map(|l| (l.key.to_string(), l.hash_key_range))
    {
        let middle = range.start() + (range.end() - range.start()) / 2;
        let children = kinesis.split_shard(STREAM, &first, middle)?;
        println!("split {first} into {} and {}", children[0], children[1]);
    }
    produced.extend(produce(&kinesis, 2_000, 1_000)?);
    println!("put {} more user records", 1_000);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        progress("after split", count(&processed));
        println!("  leases  {}", holdings(store.as_ref()).await?);
    }

    if let Some((stop, task)) = workers.remove("worker-b") {
        let stopping = tokio::time::Instant::now();
        stop.cancel();
        task.await??;
        println!(
            "worker-b stopped gracefully in {:?}; its leases were released for the others",
            stopping.elapsed()
        );
    }
    let finishing = tokio::time::Instant::now();
    produced.extend(produce(&kinesis, 3_000, 500)?);
    let wanted: HashSet<String> = produced.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&processed) < wanted.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "[{:?} later] processed {}",
        finishing.elapsed(),
        count(&processed)
    );
    println!("  leases  {}", holdings(store.as_ref()).await?);
    for (_, (stop, task)) in workers {
        stop.cancel();
        task.await??;
    }
    let seen: HashSet<String> = processed
        .lock()
        .map_err(|_| "lock poisoned")?
        .iter()
        .cloned()
        .collect();
    let missing = wanted.difference(&seen).count();
    println!(
        "produced {} user records, processed {} distinct ({} deliveries in all), missing {missing}",
        wanted.len(),
        seen.len(),
        processed.lock().map_err(|_| "lock poisoned")?.len()
    );
    if missing > 0 {
        return Err(format!("{missing} records were not processed").into());
    }
    Ok(())
}
