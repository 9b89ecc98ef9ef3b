//! Reader scenarios written once, run against every [`Harness`].

use std::collections::BTreeMap;

use std::time::Duration;

use shardwise_kinesis_source::{
    Batch, FanOutReader, KinesisError, PollingConfig, PollingReader, Record, ShardFilter,
    ShardReader, StartPosition, list_all_shards,
};

use super::{Harness, stream_id};

/// Fast settings for tests (the service limits still hold: 200 ms between calls).
pub fn config() -> PollingConfig {
    PollingConfig {
        idle_time_between_reads: Duration::from_millis(200),
        ..PollingConfig::default()
    }
}

/// Any of the readers.
#[allow(async_fn_in_trait)]
pub trait Reads {
    async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>>;
}

impl Reads for PollingReader {
    async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        PollingReader::next_batch(self).await
    }
}

impl Reads for FanOutReader {
    async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        FanOutReader::next_batch(self).await
    }
}

impl Reads for ShardReader {
    async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        ShardReader::next_batch(self).await
    }
}

/// Reads until `want` records arrived (or the shard ended), failing after a bound.
pub async fn read_records(reader: &mut impl Reads, want: usize) -> (Vec<Record>, Option<Batch>) {
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, reader.next_batch()).await;
        let batch = match next {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(e))) => panic!("reader failed: {e}"),
            Ok(None) => panic!("reader ended after {} of {want} records", records.len()),
            Err(_) => panic!("timed out after {} of {want} records", records.len()),
        };
        let ended = batch.is_shard_end();
        records.extend(batch.records.iter().cloned());
        if ended {
            return (records, Some(batch));
        }
        if records.len() >= want {
            return (records, None);
        }
    }
}

fn start(
    harness: &dyn Harness,
    stream: &str,
    shard: &str,
    position: StartPosition,
) -> PollingReader {
    PollingReader::start(
        harness.api(),
        stream_id(stream),
        shard.to_owned(),
        position,
        config(),
        shardwise_kinesis_source::MemoryBudget::unlimited(),
    )
}

/// Every record put to a 3-shard stream is read back from TRIM_HORIZON, per shard in
/// sequence order, exactly once.
pub async fn reads_every_record_in_order(harness: &dyn Harness) {
    let stream = harness.unique("order");
    harness.create_stream(&stream, 3).await;
    let mut expected: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for i in 0..45 {
        let data = format!("record-{i}").into_bytes();
        let (shard, seq) = harness.put(&stream, &format!("key-{}", i % 9), &data).await;
        expected.entry(shard).or_default().push((seq, data));
    }
    let shards = list_all_shards(harness.api().as_ref(), &stream_id(&stream), None, None)
        .await
        .unwrap();
    assert_eq!(shards.len(), 3);
    for shard in shards {
        let want = expected.remove(&shard.shard_id).unwrap_or_default();
        let mut reader = start(
            harness,
            &stream,
            &shard.shard_id,
            StartPosition::TrimHorizon,
        );
        let (records, _) = read_records(&mut reader, want.len()).await;
        let got: Vec<(String, Vec<u8>)> = records
            .iter()
            .map(|r| (r.sequence_number.clone(), r.data.to_vec()))
            .collect();
        assert_eq!(got, want, "shard {}", shard.shard_id);
    }
}

/// A split mid-read: the parent reader delivers everything up to its end, then reports both
/// children; the children hold what came after. A merge of the children ends both with the
/// merged child.
pub async fn split_and_merge_mid_read(harness: &dyn Harness) {
    let stream = harness.unique("reshard");
    harness.create_stream(&stream, 1).await;
    let shards = list_all_shards(harness.api().as_ref(), &stream_id(&stream), None, None)
        .await
        .unwrap();
    let parent = shards[0].shard_id.clone();
    for i in 0..5 {
        harness.put(&stream, &format!("k{i}"), b"before").await;
    }
    let mut reader = start(harness, &stream, &parent, StartPosition::TrimHorizon);
    let (first, _) = read_records(&mut reader, 5).await;
    assert_eq!(first.len(), 5);

    let middle = 1u128 << 127;
    harness.split(&stream, &parent, middle).await;
    let mut after_split = Vec::new();
    for i in 0..6 {
        after_split.push(harness.put(&stream, &format!("k{i}"), b"after").await);
    }
    let (rest, end) = read_records(&mut reader, usize::MAX).await;
    assert!(rest.is_empty(), "nothing reaches a closed parent: {rest:?}");
    let end = end.expect("the parent reader reports the shard end");
    let mut children: Vec<String> = end
        .child_shards
        .unwrap()
        .iter()
        .map(|c| c.shard_id.clone())
        .collect();
    children.sort();
    assert_eq!(children.len(), 2, "a split has two children");
    assert!(reader.next_batch().await.is_none(), "nothing after the end");

    let listed = list_all_shards(
        harness.api().as_ref(),
        &stream_id(&stream),
        Some(ShardFilter::AtLatest),
        None,
    )
    .await
    .unwrap();
    let mut open: Vec<String> = listed.iter().map(|s| s.shard_id.clone()).collect();
    open.sort();
    assert_eq!(open, children, "only the children are open");
    for child in &listed {
        assert_eq!(child.parent_shard_id.as_deref(), Some(parent.as_str()));
    }

    let mut in_children = 0;
    for child in &children {
        let want = after_split.iter().filter(|(s, _)| s == child).count();
        let mut r = start(harness, &stream, child, StartPosition::TrimHorizon);
        let (records, _) = read_records(&mut r, want).await;
        assert_eq!(records.len(), want, "child {child}");
        in_children += records.len();
    }
    assert_eq!(in_children, 6);

    // Merge the two children: each ends with the merged child as its only child.
    let mut readers: Vec<PollingReader> = children
        .iter()
        .map(|c| start(harness, &stream, c, StartPosition::TrimHorizon))
        .collect();
    harness.merge(&stream, &children[0], &children[1]).await;
    for (child, reader) in children.iter().zip(readers.iter_mut()) {
        let (_, end) = read_records(reader, usize::MAX).await;
        let merged = end.expect("the child ends").child_shards.unwrap();
        assert_eq!(merged.len(), 1, "{child}: one merged child");
        let mut parents = merged[0].parent_shards.clone();
        parents.sort();
        assert_eq!(parents, children, "the merged child names both parents");
    }
}

/// AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, LATEST and AT_TIMESTAMP start where they say.
pub async fn start_positions(harness: &dyn Harness) {
    let stream = harness.unique("positions");
    harness.create_stream(&stream, 1).await;
    let mut puts = Vec::new();
    for i in 0..6 {
        puts.push(
            harness
                .put(&stream, "one-key", format!("r{i}").as_bytes())
                .await,
        );
    }
    let shard = puts[0].0.clone();
    let seq = |i: usize| puts[i].1.clone();

    let mut at = start(
        harness,
        &stream,
        &shard,
        StartPosition::AtSequenceNumber(seq(2)),
    );
    let (records, _) = read_records(&mut at, 4).await;
    assert_eq!(
        records.first().map(|r| r.sequence_number.clone()),
        Some(seq(2))
    );

    let mut after = start(
        harness,
        &stream,
        &shard,
        StartPosition::AfterSequenceNumber(seq(2)),
    );
    let (records, _) = read_records(&mut after, 3).await;
    assert_eq!(
        records.first().map(|r| r.sequence_number.clone()),
        Some(seq(3))
    );

    let mut trim = start(harness, &stream, &shard, StartPosition::TrimHorizon);
    let (all, _) = read_records(&mut trim, 6).await;
    let t = all[4].approximate_arrival.expect("arrival time");
    let mut at_ts = start(harness, &stream, &shard, StartPosition::AtTimestamp(t));
    let (from_ts, _) = read_records(&mut at_ts, 1).await;
    assert!(
        from_ts
            .iter()
            .all(|r| r.approximate_arrival.is_some_and(|a| a >= t)),
        "nothing older than the timestamp"
    );
    assert!(
        from_ts.first().is_some_and(|r| r.sequence_number <= seq(4)),
        "starts at or before record 4"
    );

    // LATEST: only what is put after the reader's iterator exists. The first (empty) batch
    // proves the iterator was taken.
    let mut latest = start(harness, &stream, &shard, StartPosition::Latest);
    let first = latest.next_batch().await.unwrap().unwrap();
    assert!(first.records.is_empty(), "{first:?}");
    let (_, new_seq) = harness.put(&stream, "one-key", b"new").await;
    let (records, _) = read_records(&mut latest, 1).await;
    assert_eq!(
        records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect::<Vec<_>>(),
        vec![new_seq]
    );
}

/// `ListShards` pages: every shard once, across pages of two.
pub async fn lists_shards_across_pages(harness: &dyn Harness) {
    let stream = harness.unique("pages");
    harness.create_stream(&stream, 7).await;
    let shards = list_all_shards(harness.api().as_ref(), &stream_id(&stream), None, Some(2))
        .await
        .unwrap();
    let mut ids: Vec<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    assert_eq!(ids.len(), 7);
    ids.dedup();
    assert_eq!(ids.len(), 7, "no duplicates");
    let covered: u128 = shards
        .iter()
        .map(|s| s.hash_range.end - s.hash_range.start)
        .sum::<u128>()
        + 6;
    assert_eq!(
        covered,
        u128::MAX,
        "the open shards cover the hash space exactly"
    );
}
