//! The aggregator's rules beyond byte identity (which `vectors.rs` checks).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shardwise_kpl_deagg::{
    AggregateError, Aggregator, AggregatorConfig, Deaggregator, MAX_AGGREGATE_SIZE,
};

#[test]
fn a_record_too_large_alone_is_refused_and_nothing_changes() {
    let config = AggregatorConfig::new().with_max_size(100).unwrap();
    let mut aggregator = Aggregator::new(config);
    aggregator.add("a", None, vec![1; 10]).unwrap();
    let before = aggregator.size_bytes();
    // 20 framing + 3 key entry + 2 record header + 2 index + 2 data header + 72 data = 101.
    let error = aggregator.add("b", None, vec![2; 72]).unwrap_err();
    assert_eq!(
        error,
        AggregateError::RecordTooLarge {
            size: 101,
            max_size: 100
        }
    );
    assert!(!error.is_retryable());
    assert_eq!((aggregator.len(), aggregator.size_bytes()), (1, before));
    // One byte less fits on its own, so it closes the pending aggregate and starts the next.
    let completed = aggregator.add("b", None, vec![2; 71]).unwrap().unwrap();
    assert_eq!(completed.user_records, 1);
    assert_eq!(aggregator.size_bytes(), 100);
}

#[test]
fn invalid_explicit_hash_keys_are_refused() {
    let mut aggregator = Aggregator::new(AggregatorConfig::new());
    for bad in ["", "x", "-1", "340282366920938463463374607431768211456"] {
        assert_eq!(
            aggregator.add("a", Some(bad), "data"),
            Err(AggregateError::InvalidExplicitHashKey(bad.to_owned()))
        );
    }
    assert!(aggregator.is_empty());
    assert_eq!(aggregator.flush(), None);
}

#[test]
fn outer_keys_are_the_first_records() {
    let mut aggregator = Aggregator::new(AggregatorConfig::new());
    aggregator.add("first", None, "1").unwrap();
    aggregator.add("second", Some("77"), "2").unwrap();
    let put = aggregator.flush().unwrap();
    assert_eq!(
        (put.partition_key.as_str(), put.explicit_hash_key),
        ("first", None)
    );
    aggregator.add("third", Some("99"), "3").unwrap();
    aggregator.add("fourth", None, "4").unwrap();
    let put = aggregator.flush().unwrap();
    assert_eq!(put.partition_key, "third");
    assert_eq!(put.explicit_hash_key.as_deref(), Some("99"));
}

#[test]
fn ten_mib_aggregates() {
    let config = AggregatorConfig::new()
        .with_max_size(MAX_AGGREGATE_SIZE)
        .unwrap();
    let mut aggregator = Aggregator::new(config);
    let chunk = vec![7_u8; 3 * 1024 * 1024];
    for i in 0..3 {
        assert!(
            aggregator
                .add(&format!("k{i}"), None, chunk.clone())
                .unwrap()
                .is_none()
        );
    }
    // A fourth 3 MiB record does not fit in 10 MiB: the first three come out together.
    let put = aggregator.add("k3", None, chunk.clone()).unwrap().unwrap();
    assert_eq!(put.user_records, 3);
    assert!(put.data.len() > 9 * 1024 * 1024 && put.data.len() <= MAX_AGGREGATE_SIZE);
    let out = Deaggregator::new()
        .deaggregate(put.partition_key, put.data)
        .unwrap();
    assert_eq!(out.records.len(), 3);
    assert!(out.records.iter().all(|r| r.data().len() == chunk.len()));
}

#[test]
fn the_default_is_one_mib_with_the_shortcut() {
    let config = AggregatorConfig::default();
    assert_eq!(config.max_size(), 1024 * 1024);
    assert!(config.single_record_shortcut());
    let mut aggregator = Aggregator::new(config);
    aggregator.add("only", Some("5"), "data").unwrap();
    let put = aggregator.flush().unwrap();
    assert!(!put.aggregated);
    assert_eq!(put.data, "data");
    assert_eq!(put.explicit_hash_key.as_deref(), Some("5"));
}
