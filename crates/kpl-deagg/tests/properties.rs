//! Property tests: aggregation round trips, and deaggregation never panics and keeps its books.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::frame;
use proptest::prelude::*;
use shardwise_kpl_deagg::{
    Aggregator, AggregatorConfig, Deaggregator, Framing, HashKeyRange, InvalidSubRecordPolicy,
    MAGIC, Report, hash_key_of_partition_key,
};

#[derive(Debug, Clone)]
struct Input {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        // Few distinct keys so that tables are shared; some non-ASCII.
        prop_oneof![
            "[a-c]{0,2}",
            "[a-zA-Z0-9é鍵🔑]{1,40}",
            Just("k".repeat(256)),
        ],
        proptest::option::of(prop_oneof![
            any::<u128>().prop_map(|v| v.to_string()),
            (0_u128..100).prop_map(|v| format!("000{v}")),
        ]),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..2000),
        ],
    )
        .prop_map(|(partition_key, explicit_hash_key, data)| Input {
            partition_key,
            explicit_hash_key,
            data,
        })
}

fn check_books(report: &Report, delivered: usize) {
    assert_eq!(report.delivered, delivered);
    assert_eq!(
        report.sub_records,
        report.delivered
            + report.skipped_by_resume
            + report.dropped_out_of_range
            + report.dropped_invalid
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn aggregate_then_deaggregate_gives_the_records_back(
        inputs in proptest::collection::vec(input(), 1..120),
        max_size in prop_oneof![Just(1024 * 1024), 2400_usize..8000],
        shortcut in any::<bool>(),
    ) {
        let config = AggregatorConfig::new()
            .with_max_size(max_size)
            .unwrap()
            .with_single_record_shortcut(shortcut);
        let mut aggregator = Aggregator::new(config);
        let mut puts = Vec::new();
        for input in &inputs {
            let put = aggregator
                .add(&input.partition_key, input.explicit_hash_key.as_deref(), input.data.clone())
                .unwrap();
            puts.extend(put);
            prop_assert!(aggregator.size_bytes() <= max_size);
        }
        puts.extend(aggregator.flush());
        prop_assert!(aggregator.is_empty());

        let deaggregator = Deaggregator::new().with_policy(InvalidSubRecordPolicy::Strict);
        let mut next = 0;
        for put in puts {
            prop_assert!(put.data.len() <= max_size || !put.aggregated);
            prop_assert_eq!(put.aggregated, put.user_records > 1 || !shortcut);
            let first = &inputs[next];
            prop_assert_eq!(&put.partition_key, &first.partition_key);
            prop_assert_eq!(&put.explicit_hash_key, &first.explicit_hash_key);
            let out = deaggregator.deaggregate(put.partition_key.clone(), put.data.clone()).unwrap();
            check_books(&out.report, put.user_records);
            prop_assert_eq!(out.records.len(), put.user_records);
            for (sub, record) in out.records.iter().enumerate() {
                let input = &inputs[next];
                next += 1;
                prop_assert_eq!(record.data().as_ref(), input.data.as_slice());
                prop_assert_eq!(record.partition_key(), input.partition_key.as_str());
                // A plain record's explicit hash key is not known to a consumer.
                let expected_hash = match &input.explicit_hash_key {
                    Some(text) if put.aggregated => text.parse::<u128>().unwrap(),
                    _ => hash_key_of_partition_key(input.partition_key.as_bytes()),
                };
                prop_assert_eq!(record.hash_key(), expected_hash);
                if put.aggregated {
                    prop_assert_eq!(record.sub_sequence_number(), sub as u64);
                    prop_assert_eq!(record.explicit_hash_key(), input.explicit_hash_key.as_deref());
                    prop_assert!(record.is_aggregated());
                } else {
                    prop_assert!(!record.is_aggregated());
                }
            }
        }
        prop_assert_eq!(next, inputs.len());
    }

    #[test]
    fn deaggregation_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        framing in 0_u8..3,
        policy in prop_oneof![
            Just(InvalidSubRecordPolicy::KclCompatible),
            Just(InvalidSubRecordPolicy::SkipInvalid),
            Just(InvalidSubRecordPolicy::Strict),
        ],
        range in (any::<u128>(), any::<u128>()),
        skip in proptest::option::of(0_u64..8),
    ) {
        // Raw bytes, bytes behind the magic, or a body framed with a valid MD5 so that the
        // protobuf decoder and the sub-record checks see it.
        let data = match framing {
            0 => Bytes::from(bytes),
            1 => Bytes::from([&MAGIC[..], &bytes].concat()),
            _ => frame(&bytes),
        };
        let range = HashKeyRange::new(range.0.min(range.1), range.0.max(range.1)).unwrap();
        let deaggregator = Deaggregator::new().with_policy(policy).with_hash_key_range(range);
        let mut out = Vec::new();
        if let Ok(report) = deaggregator.deaggregate_into("pk", data, skip, &mut out) {
            check_books(&report, out.len());
        }
    }

    #[test]
    fn deaggregation_never_panics_on_mutated_aggregates(
        inputs in proptest::collection::vec(input(), 2..20),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        truncate in proptest::option::of(any::<prop::sample::Index>()),
        policy in prop_oneof![
            Just(InvalidSubRecordPolicy::KclCompatible),
            Just(InvalidSubRecordPolicy::SkipInvalid),
            Just(InvalidSubRecordPolicy::Strict),
        ],
    ) {
        let mut aggregator =
            Aggregator::new(AggregatorConfig::new().with_single_record_shortcut(false));
        for input in &inputs {
            prop_assert!(aggregator
                .add(&input.partition_key, input.explicit_hash_key.as_deref(), input.data.clone())
                .unwrap()
                .is_none());
        }
        let put = aggregator.flush().unwrap();
        // Mutate the body and re-frame it, so the MD5 is right and the damage reaches the parser.
        let mut body = put.data[MAGIC.len()..put.data.len() - 16].to_vec();
        for (index, value) in mutations {
            let i = index.index(body.len());
            body[i] = value;
        }
        if let Some(index) = truncate {
            body.truncate(index.index(body.len()));
        }
        let deaggregator = Deaggregator::new().with_policy(policy);
        let mut out = Vec::new();
        if let Ok(report) = deaggregator.deaggregate_into("pk", frame(&body), None, &mut out) {
            check_books(&report, out.len());
            if report.framing != Framing::Aggregated {
                prop_assert_eq!(out.len(), 1);
            }
        }
    }

    #[test]
    fn resuming_skips_exactly_the_prefix(
        inputs in proptest::collection::vec(input(), 2..30),
        skip_through in 0_u64..40,
    ) {
        let mut aggregator =
            Aggregator::new(AggregatorConfig::new().with_single_record_shortcut(false));
        for input in &inputs {
            aggregator
                .add(&input.partition_key, input.explicit_hash_key.as_deref(), input.data.clone())
                .unwrap();
        }
        let put = aggregator.flush().unwrap();
        let deaggregator = Deaggregator::new();
        let all = deaggregator.deaggregate("pk", put.data.clone()).unwrap();
        let resumed = deaggregator.deaggregate_resuming("pk", put.data, skip_through).unwrap();
        let expected: Vec<_> = all
            .records
            .into_iter()
            .filter(|r| r.sub_sequence_number() > skip_through)
            .collect();
        prop_assert_eq!(&resumed.records, &expected);
        prop_assert_eq!(resumed.report.skipped_by_resume, inputs.len() - expected.len());
    }
}
