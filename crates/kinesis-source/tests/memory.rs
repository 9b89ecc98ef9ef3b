//! The reader scenarios against the in-memory Kinesis, plus what only it can inject: throttling,
//! expired iterators, service errors, expired page tokens, a slow processor. Time is paused, so
//! the 5-calls-per-second limit and the prefetch bound are checked by counting, not timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::scenarios::{self, config, read_records};
use common::{Memory, stream_id};
use shardwise_kinesis_source::testkit::{Fault, InMemoryKinesis};
use shardwise_kinesis_source::{
    KinesisApi, KinesisErrorKind, PollingConfig, PollingReader, StartPosition, list_all_shards,
};

fn memory() -> Memory {
    Memory(Arc::new(InMemoryKinesis::new()))
}

#[tokio::test(start_paused = true)]
async fn reads_every_record_in_order() {
    scenarios::reads_every_record_in_order(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn split_and_merge_mid_read() {
    scenarios::split_and_merge_mid_read(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn start_positions() {
    scenarios::start_positions(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn lists_shards_across_pages() {
    scenarios::lists_shards_across_pages(&Memory(Arc::new(InMemoryKinesis::with_limits(
        Duration::from_secs(300),
        2,
    ))))
    .await;
}

/// One shard with `n` records.
fn busy_shard(n: usize) -> (Arc<InMemoryKinesis>, String) {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut shard = String::new();
    for i in 0..n {
        shard = kinesis
            .put("s", &format!("k{i}"), format!("r{i}").into_bytes())
            .unwrap()
            .0;
    }
    (kinesis, shard)
}

fn reader(kinesis: &Arc<InMemoryKinesis>, shard: &str, config: PollingConfig) -> PollingReader {
    PollingReader::start(
        kinesis.clone(),
        stream_id("s"),
        shard.to_owned(),
        StartPosition::TrimHorizon,
        config,
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    )
}

fn sequence_numbers(records: &[shardwise_kinesis_source::Record]) -> Vec<String> {
    records.iter().map(|r| r.sequence_number.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn never_more_than_five_calls_per_second() {
    let (kinesis, shard) = busy_shard(2_000);
    let mut r = reader(
        &kinesis,
        &shard,
        PollingConfig {
            max_records: 10,
            ..config()
        },
    );
    let (records, _) = read_records(&mut r, 2_000).await;
    assert_eq!(records.len(), 2_000);
    let calls = kinesis.get_records_calls(&shard);
    assert!(calls.len() >= 200, "{} calls", calls.len());
    for window in calls.windows(6) {
        let span = window[5] - window[0];
        assert!(span >= Duration::from_secs(1), "6 calls within {span:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn prefetch_stays_bounded_while_the_processor_is_slow() {
    let (kinesis, shard) = busy_shard(5_000);
    let bounded = PollingConfig {
        max_records: 100,
        prefetch_records: 250,
        prefetch_batches: 10,
        ..config()
    };
    let mut r = reader(&kinesis, &shard, bounded);
    // Nobody reads for a minute of virtual time.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (buffered, _) = r.buffered();
    assert!(buffered <= 250, "{buffered} records buffered");
    assert!(buffered >= 200, "the reader did prefetch ({buffered})");
    let calls_while_full = kinesis.get_records_calls(&shard).len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        kinesis.get_records_calls(&shard).len(),
        calls_while_full,
        "no calls while the buffer is full"
    );
    // Then everything arrives, once, in order.
    let (records, _) = read_records(&mut r, 5_000).await;
    assert_eq!(records.len(), 5_000);
    let seqs = sequence_numbers(&records);
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in order, no duplicates");
}

#[tokio::test(start_paused = true)]
async fn expired_iterators_resume_after_the_last_record() {
    let (kinesis, shard) = busy_shard(300);
    let mut r = reader(
        &kinesis,
        &shard,
        PollingConfig {
            max_records: 50,
            prefetch_records: 50,
            ..config()
        },
    );
    let (mut records, _) = read_records(&mut r, 100).await;
    kinesis.inject(Fault::ExpireIterators);
    let (more, _) = read_records(&mut r, 300 - records.len()).await;
    records.extend(more);
    assert_eq!(records.len(), 300);
    let seqs = sequence_numbers(&records);
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        300,
        "no duplicates after the iterator expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_processor_slower_than_the_iterator_lifetime_loses_nothing() {
    let (kinesis, shard) = busy_shard(400);
    let mut r = reader(
        &kinesis,
        &shard,
        PollingConfig {
            max_records: 100,
            prefetch_records: 100,
            prefetch_batches: 1,
            ..config()
        },
    );
    let (mut records, _) = read_records(&mut r, 100).await;
    // The buffer is full and the held iterator outlives its 300 s.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let (more, _) = read_records(&mut r, 400 - records.len()).await;
    records.extend(more);
    let seqs = sequence_numbers(&records);
    let mut unique = seqs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seqs.len(), unique.len()), (400, 400));
}

#[tokio::test(start_paused = true)]
async fn throttling_backs_off_exponentially_and_recovers() {
    let (kinesis, shard) = busy_shard(50);
    kinesis.inject(Fault::ThrottleGetRecords {
        shard_id: None,
        times: 4,
    });
    let base = config();
    let mut r = reader(&kinesis, &shard, base.clone());
    let (records, _) = read_records(&mut r, 50).await;
    assert!(records.len() >= 50);
    let calls = kinesis.get_records_calls(&shard);
    let gaps: Vec<Duration> = calls.windows(2).take(4).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let floor = (base.backoff_initial * 2u32.pow(i as u32)).min(base.backoff_max) / 2;
        assert!(*gap >= floor, "gap {i} {gap:?} below {floor:?}");
    }
    assert!(gaps[3] > gaps[0], "the backoff grows: {gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn service_errors_are_retried() {
    let (kinesis, shard) = busy_shard(20);
    kinesis.inject(Fault::ServiceErrors { times: 3 });
    let mut r = reader(&kinesis, &shard, config());
    let (records, _) = read_records(&mut r, 20).await;
    assert_eq!(records.len(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_stream_ends_the_reader_with_its_error() {
    let (kinesis, shard) = busy_shard(5);
    let mut r = reader(&kinesis, &shard, config());
    let (records, _) = read_records(&mut r, 5).await;
    assert_eq!(records.len(), 5);
    kinesis.delete_stream("s");
    let err = loop {
        match r.next_batch().await {
            Some(Ok(batch)) => assert!(batch.records.is_empty()),
            Some(Err(err)) => break err,
            None => panic!("ended without the error"),
        }
    };
    assert_eq!(err.kind(), KinesisErrorKind::ResourceNotFound, "{err}");
    assert!(r.next_batch().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_expired_page_token_restarts_the_listing() {
    let kinesis = Arc::new(InMemoryKinesis::with_limits(Duration::from_secs(300), 2));
    kinesis.create_stream("s", 5);
    kinesis.inject(Fault::ExpireNextTokens { times: 2 });
    let shards = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap();
    assert_eq!(shards.len(), 5);
    kinesis.inject(Fault::ExpireNextTokens { times: 10 });
    let err = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        KinesisErrorKind::ExpiredNextToken,
        "gives up after a few restarts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_response_waits_for_the_byte_budget() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut shard = String::new();
    for i in 0..8 {
        shard = kinesis
            .put("s", &format!("k{i}"), vec![7u8; 1024 * 1024])
            .unwrap()
            .0;
    }
    let mut r = reader(
        &kinesis,
        &shard,
        PollingConfig {
            max_records: 4,
            ..config()
        },
    );
    let (records, _) = read_records(&mut r, 8).await;
    assert_eq!(records.len(), 8);
    let calls = kinesis.get_records_calls(&shard);
    // 4 MiB at 2 MiB/s: the second call waits about two seconds.
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(1_900),
        "{:?}",
        calls[1] - calls[0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_shard_ages_out_after_the_retention_period() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    kinesis.set_retention("s", Duration::from_secs(3_600));
    let parent = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap()[0]
        .clone();
    tokio::time::advance(Duration::from_secs(1_800)).await;
    let children = kinesis
        .split_shard("s", &parent.shard_id, 1 << 127)
        .unwrap();
    let listed = |kinesis: Arc<InMemoryKinesis>| async move {
        let mut ids: Vec<String> = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.shard_id)
            .collect();
        ids.sort();
        ids
    };
    // An hour after the stream was created, but not an hour after the split: still listed.
    tokio::time::advance(Duration::from_secs(3_000)).await;
    assert_eq!(listed(kinesis.clone()).await.len(), 3);
    let position = StartPosition::TrimHorizon;
    kinesis
        .get_shard_iterator(&stream_id("s"), &parent.shard_id, &position)
        .await
        .unwrap();
    // An hour after the split: gone, and its children stay.
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(listed(kinesis.clone()).await, children.to_vec());
    let err = kinesis
        .get_shard_iterator(&stream_id("s"), &parent.shard_id, &position)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KinesisErrorKind::ResourceNotFound, "{err}");
}

/// Reads batches until `want` records arrived; returns each batch's record count.
async fn batch_sizes(r: &mut PollingReader, want: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < want {
        let batch = r.next_batch().await.unwrap().unwrap();
        if !batch.records.is_empty() {
            sizes.push(batch.records.len());
        }
    }
    sizes
}

#[tokio::test(start_paused = true)]
async fn a_call_is_sized_to_the_shards_byte_budget() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut shard = String::new();
    // 1,000 B of data plus a 4-character key: 1,004 B a record.
    for i in 0..3_000 {
        shard = kinesis
            .put("s", &format!("k{:03}", i % 1_000), vec![7u8; 1_000])
            .unwrap()
            .0;
    }
    let mut r = reader(&kinesis, &shard, config());
    let sizes = batch_sizes(&mut r, 3_000).await;
    // First 100 (no size known yet), then what 2 MiB/s allows over 200 ms: 419,430 B / 1,004 B
    // = 417.8, rounded up to 418 records a call.
    assert_eq!(sizes[0], 100, "{sizes:?}");
    assert_eq!(sizes[1], 418, "{sizes:?}");
    assert!(sizes[1..].iter().all(|&n| n <= 418), "{sizes:?}");
}

#[tokio::test(start_paused = true)]
async fn small_records_are_asked_for_up_to_max_records() {
    let (kinesis, shard) = busy_shard(25_000);
    let mut r = reader(&kinesis, &shard, config());
    let sizes = batch_sizes(&mut r, 25_000).await;
    assert_eq!(sizes[..3], [100, 10_000, 10_000], "{sizes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_shard_aging_out_between_two_pages_shifts_nothing() {
    use shardwise_kinesis_source::ListShardsRequest;
    let kinesis = Arc::new(InMemoryKinesis::with_limits(Duration::from_secs(300), 2));
    kinesis.create_stream("s", 1);
    kinesis.set_retention("s", Duration::from_secs(3_600));
    let parent = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap()[0]
        .shard_id
        .clone();
    // shardId-0 (closed) and its children -1 and -2, listed two a page.
    let children = kinesis.split_shard("s", &parent, 1 << 127).unwrap();
    tokio::time::advance(Duration::from_secs(3_500)).await;
    let first = kinesis
        .list_shards(&ListShardsRequest::First {
            stream: stream_id("s"),
            filter: None,
            max_results: None,
        })
        .await
        .unwrap();
    let ids = |page: &shardwise_kinesis_source::ShardPage| -> Vec<String> {
        page.shards.iter().map(|s| s.shard_id.clone()).collect()
    };
    assert_eq!(ids(&first), [parent.clone(), children[0].clone()]);
    // The parent ages out (an hour after the split) before the second page is asked for,
    // while the page token is still valid (5 minutes).
    tokio::time::advance(Duration::from_secs(200)).await;
    let second = kinesis
        .list_shards(&ListShardsRequest::Next {
            token: first.next_token.clone().unwrap(),
            max_results: None,
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&second),
        [children[1].clone()],
        "the shard after the first page's last"
    );
}

/// Twenty readers that nobody reads from: with one memory budget shared between them, what they
/// fetch ahead stays within it (plus one reservation), however many shards; without it, each
/// fills its own prefetch queue. Then a reader whose batches are taken reads its whole shard
/// while the others, their processors stuck, keep what they fetched: they cannot take the
/// budget its batches free.
#[tokio::test(start_paused = true)]
async fn readers_share_one_memory_budget() {
    use shardwise_kinesis_source::MemoryBudget;
    const SHARDS: u32 = 20;
    const RECORD: usize = 10 * 1024;
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", SHARDS);
    let mut per_shard = std::collections::HashMap::<String, usize>::new();
    for i in 0..6_000 {
        let (shard, _) = kinesis
            .put("s", &format!("k{i}"), vec![b'x'; RECORD])
            .unwrap();
        *per_shard.entry(shard).or_default() += 1;
    }
    let shards: Vec<String> = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let polling = config();
    let start = |budget: &MemoryBudget| -> Vec<PollingReader> {
        shards
            .iter()
            .map(|shard| {
                PollingReader::start(
                    kinesis.clone(),
                    stream_id("s"),
                    shard.clone(),
                    StartPosition::TrimHorizon,
                    polling.clone(),
                    budget.clone(),
                )
            })
            .collect()
    };
    let buffered =
        |readers: &[PollingReader]| -> usize { readers.iter().map(|r| r.buffered().1).sum() };

    let unlimited = start(&MemoryBudget::unlimited());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let without = buffered(&unlimited);
    let limit = 2 * 1024 * 1024;
    assert!(
        without > 4 * limit,
        "without a budget every shard reads ahead: {without}"
    );
    drop(unlimited);

    let budget = MemoryBudget::new(limit);
    let mut readers = start(&budget);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let within = buffered(&readers);
    println!("fetched ahead: {without} bytes without a budget, {within} within {limit}");
    assert!(
        within <= limit,
        "{within} bytes fetched ahead with a budget of {limit}"
    );
    // Each reader fills its share, to within one record.
    assert!(
        within + SHARDS as usize * (RECORD + 16) >= limit,
        "the budget is used: {within}"
    );
    assert_eq!(
        budget.used(),
        within,
        "the budget counts what is queued ({} used)",
        budget.used()
    );

    // One reader's processor takes its batches: it reads its whole shard, far more than it
    // had fetched, while the budget holds.
    let queued = readers[0].buffered().0;
    let whole = per_shard[&shards[0]];
    assert!(whole > 2 * queued, "{whole} records, {queued} queued");
    let (records, _) = read_records(&mut readers[0], whole).await;
    assert_eq!(records.len(), whole);
    let freed = budget.used();
    assert!(freed < within, "taking batches frees budget");
    assert!(budget.used() <= limit);
    drop(readers);
    assert_eq!(budget.used(), 0, "dropped readers give back what they held");
}

/// A reader dropped while its task waits to queue a batch (its queue full, the processor slow)
/// gives back every byte it held in the shared budget: a lease lost or released does not shrink
/// the worker's budget for good.
#[tokio::test(start_paused = true)]
async fn a_dropped_reader_gives_back_its_budget() {
    use shardwise_kinesis_source::MemoryBudget;
    let (kinesis, shard) = busy_shard(1_000);
    let budget = MemoryBudget::new(1 << 30);
    let reader = PollingReader::start(
        kinesis.clone(),
        stream_id("s"),
        shard,
        StartPosition::TrimHorizon,
        PollingConfig {
            max_records: 10,
            prefetch_batches: 1,
            ..config()
        },
        budget.clone(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (queued, _) = reader.buffered();
    assert_eq!(queued, 20, "one batch queued and one waiting to be queued");
    assert!(budget.used() > 0);
    drop(reader);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(budget.used(), 0, "everything given back");
}

/// A reader at LATEST whose iterator expires before any record came (it waited for the
/// worker's memory budget, say) replaces it from when reading began, not from a new LATEST:
/// records put in between are read, not skipped.
#[tokio::test(start_paused = true)]
async fn an_expired_iterator_at_latest_keeps_its_place() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let shard = list_all_shards(kinesis.as_ref(), &stream_id("s"), None, None)
        .await
        .unwrap()[0]
        .shard_id
        .clone();
    let mut reader = PollingReader::start(
        kinesis.clone(),
        stream_id("s"),
        shard.clone(),
        StartPosition::Latest,
        config(),
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    );
    while kinesis.get_records_calls(&shard).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        kinesis.put("s", "k", format!("r{i}").into_bytes()).unwrap();
    }
    kinesis.inject(Fault::ExpireIterators);
    let (records, _) = read_records(&mut reader, 5).await;
    let data: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    assert_eq!(data, ["r0", "r1", "r2", "r3", "r4"]);
}

/// The service model keeps the service's per-shard limits: a sixth call within a second is
/// throttled, and a response larger than a second of the byte budget throttles the calls that
/// follow until the debt is paid back.
#[tokio::test(start_paused = true)]
async fn the_service_model_throttles_like_the_service() {
    use shardwise_kinesis_source::testkit::ServiceModel;
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut shard = String::new();
    for i in 0..30 {
        // Six records of a byte, then records of 1 MiB.
        let size = if i < 6 { 1 } else { 1024 * 1024 };
        shard = kinesis
            .put("s", &format!("k{i}"), vec![b'x'; size])
            .unwrap()
            .0;
    }
    kinesis.set_service_model(Some(ServiceModel::service()));
    let stream = stream_id("s");
    let mut iterator = kinesis
        .get_shard_iterator(&stream, &shard, &StartPosition::TrimHorizon)
        .await
        .unwrap();
    // Five calls of one record, then a sixth in the same second.
    for _ in 0..5 {
        let out = kinesis.get_records(&stream, &iterator, 1).await.unwrap();
        assert_eq!(out.records.len(), 1);
        iterator = out.next_iterator.unwrap();
    }
    let sixth = kinesis.get_records(&stream, &iterator, 1).await;
    assert_eq!(sixth.unwrap_err().kind(), KinesisErrorKind::Throttled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A byte and 9 MiB in one call (one more MiB would pass the 10 MiB a call returns)...
    let big = kinesis
        .get_records(&stream, &iterator, 10_000)
        .await
        .unwrap();
    assert_eq!(big.records.len(), 10);
    iterator = big.next_iterator.unwrap();
    // ...puts the shard 7 MiB in debt: 3.5 s of calls fail, then they pass again.
    tokio::time::sleep(Duration::from_millis(3_400)).await;
    let early = kinesis.get_records(&stream, &iterator, 1).await;
    assert_eq!(early.unwrap_err().kind(), KinesisErrorKind::Throttled);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(kinesis.get_records(&stream, &iterator, 1).await.is_ok());
    let reads = kinesis.shard_reads(&shard);
    assert_eq!((reads.calls, reads.throttled, reads.records), (7, 2, 16));
}

/// Draining a backlog under the service model, the reader stays within the shard's limits:
/// not one call throttled, whatever the record size.
#[tokio::test(start_paused = true)]
async fn a_backlogged_shard_is_never_throttled() {
    use shardwise_kinesis_source::MemoryBudget;
    use shardwise_kinesis_source::testkit::ServiceModel;
    for size in [100, 1_000, 50_000] {
        let kinesis = Arc::new(InMemoryKinesis::new());
        kinesis.create_stream("s", 1);
        let records = 8 * 1024 * 1024 / size;
        let data = bytes::Bytes::from(vec![b'x'; size]);
        let mut shard = String::new();
        for i in 0..records {
            shard = kinesis.put("s", &format!("k{i}"), data.clone()).unwrap().0;
        }
        kinesis.set_service_model(Some(ServiceModel {
            call_latency: Duration::from_millis(30),
            ..ServiceModel::service()
        }));
        let mut reader = PollingReader::start(
            kinesis.clone(),
            stream_id("s"),
            shard.clone(),
            StartPosition::TrimHorizon,
            PollingConfig::default(),
            MemoryBudget::unlimited(),
        );
        let mut got = 0;
        while got < records {
            got += reader.next_batch().await.unwrap().unwrap().records.len();
        }
        let reads = kinesis.shard_reads(&shard);
        assert_eq!(reads.throttled, 0, "{size} B records: {reads:?}");
        assert_eq!(reads.records, records as u64);
    }
}

/// A processor that falls behind gets the batches that queued up while it worked as one batch,
/// in order, up to `max_records`: its time per batch (a bulk write, a checkpoint) is spent once
/// for all of them. The batch that ends a closed shard is joined too, and still ends it.
#[tokio::test(start_paused = true)]
async fn batches_queued_behind_a_slow_processor_are_joined() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut shard = String::new();
    // 2,000 B a record: calls of 210 records (2 MiB/s over 200 ms) after the first of 100.
    for i in 0..1_000 {
        shard = kinesis
            .put("s", &format!("k{i:03}"), vec![b'x'; 1_996])
            .unwrap()
            .0;
    }
    kinesis.split_shard("s", &shard, 1 << 127).unwrap();
    let expected: Vec<String> = {
        let mut all = reader(&kinesis, &shard, config());
        read_records(&mut all, 1_000).await.0
    }
    .iter()
    .map(|r| r.sequence_number.clone())
    .collect();
    assert_eq!(expected.len(), 1_000);

    let mut r = reader(&kinesis, &shard, config());
    // The processor is busy for a while: the queue fills (4 batches) and one more waits.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let first = r.next_batch().await.unwrap().unwrap();
    assert_eq!(
        first.records.len(),
        100 + 3 * 210,
        "the four queued batches, joined"
    );
    assert!(!first.is_shard_end());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let last = r.next_batch().await.unwrap().unwrap();
    assert_eq!(last.records.len(), 1_000 - 730, "the rest, joined");
    assert!(last.is_shard_end(), "the joined batch still ends the shard");
    assert!(r.next_batch().await.is_none());
    let got: Vec<String> = first
        .records
        .iter()
        .chain(&last.records)
        .map(|r| r.sequence_number.clone())
        .collect();
    assert_eq!(got, expected, "every record once, in order");

    // Never more than max_records in one batch.
    let mut capped = reader(
        &kinesis,
        &shard,
        PollingConfig {
            max_records: 250,
            ..config()
        },
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut sizes = Vec::new();
    while let Some(batch) = capped.next_batch().await {
        sizes.push(batch.unwrap().records.len());
    }
    assert_eq!(sizes.iter().sum::<usize>(), 1_000);
    assert!(sizes.iter().all(|&n| n <= 250), "{sizes:?}");
    assert_eq!(sizes[0], 100, "the next batch would pass 250: {sizes:?}");
}
